"""``python -m dmdnet.train``: train one DMDNet variant of ``params.yaml`` (the ``train_dmdnet`` stage).

    python -m dmdnet.train --params params.yaml --variant dmdnet --dataset data/celebref --out models/dmdnet
    torchrun --nproc_per_node 4 -m dmdnet.train …     # DDP: NCCL on GPUs, gloo on CPUs
    python -m dmdnet.train … --resume                 # continue from <out>/checkpoints/last.pt exactly

Writes into ``--out``: ``generator.pth`` (any variant, :func:`dmdnet.trained.load_generator`), ``DMDNet.pth``
(the official layout, release configuration only), ``log.csv``, ``samples/``, ``checkpoints/last.pt`` and
``summary.json`` (what was trained, on what, for how long).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

from celebref.atomic import atomic_write_text
from celebref.config import load_section
from curate.dataset import CelebRefHQ
from degrade.config import DegradationRanges
from dmdnet.train.config import TrainSection
from dmdnet.train.data import TrainingFaces, collate_samples, extra_faces, generic_faces
from dmdnet.train.dmdnet_task import DMDNetTraining
from dmdnet.train.losses import VGGFeatures
from dmdnet.train.trainer import Trainer, distributed_context
from dmdnet.trained import config_to_dict


def _split(root: Path, split: str) -> CelebRefHQ | None:
    faces = CelebRefHQ(root, split)
    return faces if len(faces) else None


def build_trainer(args: argparse.Namespace) -> tuple[Trainer, TrainSection]:
    section = load_section(TrainSection, "train", args.params)
    if args.variant not in section.variants:
        known = ", ".join(sorted(section.variants))
        raise SystemExit(f"{args.params}: no train variant {args.variant!r}; known: {known}")
    variant = section.variants[args.variant]
    ranges = load_section(DegradationRanges, "degrade.ranges", args.params)
    data = section.data_config()
    extras = tuple(r for folder in section.extra_faces for r in extra_faces(folder))
    train = _split(args.dataset, "train")
    if train is None:
        raise SystemExit(f"{args.dataset}: the train split is empty")
    train_set = TrainingFaces(train, ranges, data, extra=extras)
    val = _split(args.dataset, "val")
    val_set = None if val is None else TrainingFaces(val, ranges, data)
    network = variant.network.build()
    schedule = variant.schedule.build()
    faces = boxes = None
    if network.items and schedule.stages[0] == "init":
        faces, boxes = generic_faces(train_set, network.items, section.seed)
    torch.manual_seed(section.seed)  # the initial weights
    model = DMDNetTraining(
        network,
        schedule,
        generic_faces=faces,
        generic_boxes=boxes,
        dictionary_lr=section.trainer.dictionary_lr,
    )
    config = section.trainer_config()
    vgg = None
    if config.losses.needs_vgg:
        w = section.weights
        vgg = VGGFeatures.from_file(w.vgg19, w.dir)
    trainer = Trainer(model, train_set, val_set, config, args.out, collate=collate_samples, vgg=vgg)
    return trainer, section


def run(args: argparse.Namespace) -> dict:
    ctx = distributed_context()
    start = time.perf_counter()
    trainer, section = build_trainer(args)
    if ctx.is_main:
        val = "none (no plateau schedule)" if trainer.val_set is None else f"{len(trainer.val_set)} faces"
        print(
            f"train {args.variant}: {len(trainer.train_set)} faces, val {val}, {ctx.world} process(es) on "
            f"{trainer.device}, {trainer.dtype}, {trainer.config.steps} steps of {trainer.config.batch_size}",
            file=sys.stderr,
        )
    last = trainer.fit(resume=args.resume)
    summary: dict = {}
    if ctx.is_main:
        from celebref.hardware import capabilities

        exported = trainer.model.export(args.out)
        variant = section.variants[args.variant]
        summary = {
            "variant": args.variant,
            "description": variant.description,
            "paper_row": variant.paper_row,
            "network": config_to_dict(trainer.model.config),
            "schedule": variant.schedule.model_dump(mode="json"),
            "steps": trainer.step,
            "batch_size": trainer.config.batch_size,
            "train_faces": len(trainer.train_set),
            "processes": ctx.world,
            "device": capabilities(trainer.device).describe(),
            "precision": str(trainer.dtype).removeprefix("torch."),
            "seconds": round(time.perf_counter() - start, 1),
            "last": last,
            "files": [p.name for p in exported],
        }
        atomic_write_text(Path(args.out) / "summary.json", json.dumps(summary, indent=2) + "\n")
        print(
            f"trained {args.variant}: {trainer.step} steps, wrote {', '.join(summary['files'])}",
            file=sys.stderr,
        )
    return summary


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m dmdnet.train", description=__doc__.split("\n")[0])
    p.add_argument("--params", type=Path, default=Path("params.yaml"))
    p.add_argument("--variant", default="dmdnet", help="a key of train.variants (default: dmdnet)")
    p.add_argument("--dataset", type=Path, default=Path("data/celebref"))
    p.add_argument("--out", type=Path, default=Path("models/dmdnet"))
    p.add_argument("--resume", action="store_true", help="continue from <out>/checkpoints/last.pt")
    return p


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        run(args)
    except (FileNotFoundError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    finally:
        if torch.distributed.is_initialized():
            torch.distributed.destroy_process_group()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
