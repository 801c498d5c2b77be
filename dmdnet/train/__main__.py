"""``python -m dmdnet.train``: train one variant of ``params.yaml`` (the ``train_*`` DVC stages).

    python -m dmdnet.train --params params.yaml --variant dmdnet --dataset data/celebref --out models/dmdnet
    python -m dmdnet.train --model asffnet --variant asffnet --out models/asffnet   # train.asffnet_variants
    python -m dmdnet.train --model gfrnet --variant gfrnet --out models/gfrnet      # train.gfrnet_variants
    torchrun --nproc_per_node 4 -m dmdnet.train …     # DDP: NCCL on GPUs, gloo on CPUs
    python -m dmdnet.train … --resume                 # continue from <out>/checkpoints/last.pt exactly

Writes into ``--out``: ``generator.pth`` (DMDNet: any variant, :func:`dmdnet.trained.load_generator`;
ASFFNet: the official ``ASFFNet512.pth`` layout with its config, :func:`asffnet.trained.load_asffnet`;
GFRNet: :func:`gfrnet.trained.load_gfrnet`),
``DMDNet.pth`` (the official layout, DMDNet's release configuration only), ``log.csv``, ``samples/``,
``checkpoints/last.pt`` and ``summary.json`` (what was trained, on what, for how long).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

from celebref.atomic import atomic_write_text
from celebref.cli import EXIT_BAD_INPUT, error
from celebref.config import load_section
from celebref.params import load_stage_config
from curate.dataset import CelebRefHQ
from degrade.config import DegradationRanges
from dmdnet.train.config import (
    MODELS,
    ASFFNetVariantConfig,
    GFRNetVariantConfig,
    TrainSection,
    VariantConfig,
)
from dmdnet.train.data import TrainingFaces, collate_samples, extra_faces, generic_faces
from dmdnet.train.dmdnet_task import DMDNetTraining
from dmdnet.train.losses import VGGFeatures
from dmdnet.train.task import TrainableRestorer
from dmdnet.train.trainer import Trainer, distributed_context
from dmdnet.trained import config_to_dict


def _split(root: Path, split: str) -> CelebRefHQ | None:
    faces = CelebRefHQ(root, split)
    return faces if len(faces) else None


def _dmdnet(variant: VariantConfig, section: TrainSection, train_set: TrainingFaces) -> TrainableRestorer:
    network = variant.network.build()
    schedule = variant.schedule.build()
    faces = boxes = None
    if network.items and schedule.stages[0] in ("init", "forward"):
        faces, boxes = generic_faces(train_set, network.items, section.seed)
    torch.manual_seed(section.seed)  # the initial weights
    return DMDNetTraining(
        network,
        schedule,
        generic_faces=faces,
        generic_boxes=boxes,
        dictionary_lr=section.trainer.dictionary_lr,
    )


def _asffnet(variant: ASFFNetVariantConfig, section: TrainSection) -> TrainableRestorer:
    from dmdnet.train.asffnet_task import ASFFNetTraining

    torch.manual_seed(section.seed)
    return ASFFNetTraining(variant.network.build())


def _gfrnet(variant: GFRNetVariantConfig, section: TrainSection) -> TrainableRestorer:
    from dmdnet.train.gfrnet_task import GFRNetTraining

    torch.manual_seed(section.seed)
    return GFRNetTraining(
        variant.network.build(), warp_steps=variant.warp_steps, landmark=variant.landmark, tv=variant.tv
    )


def build_trainer(args: argparse.Namespace) -> tuple[Trainer, TrainSection]:
    section = load_stage_config(TrainSection, "train", args.params)  # checks every section first
    model_name = getattr(args, "model", "dmdnet")
    variants = section.variants_of(model_name)
    if args.variant not in variants:
        known = ", ".join(sorted(variants)) or "none"
        where = "train.variants" if model_name == "dmdnet" else f"train.{model_name}_variants"
        raise ValueError(f"{args.params}: no {where} entry {args.variant!r}; known: {known}")
    variant = variants[args.variant]
    ranges = load_section(DegradationRanges, "degrade.ranges", args.params)
    # ASFFNet restores with one reference: draw at least one wherever the identity has another image
    # GFRNet* restores with the identity's most frontal other image
    data = section.data_config(
        min_references=0 if model_name == "dmdnet" else 1,
        reference_rule="frontal" if model_name == "gfrnet" else "random",
    )
    extras = tuple(r for folder in section.extra_faces for r in extra_faces(folder))
    train = _split(args.dataset, "train")
    if train is None:
        raise ValueError(f"{args.dataset}: the train split is empty")
    train_set = TrainingFaces(train, ranges, data, extra=extras)
    val = _split(args.dataset, "val")
    val_set = None if val is None else TrainingFaces(val, ranges, data)
    if isinstance(variant, ASFFNetVariantConfig):
        model = _asffnet(variant, section)
    elif isinstance(variant, GFRNetVariantConfig):
        model = _gfrnet(variant, section)
    else:
        model = _dmdnet(variant, section, train_set)
    config = section.trainer_config(variant.steps, variant.lr)
    vgg = None
    if config.losses.needs_vgg:
        w = section.weights
        vgg = VGGFeatures.from_file(w.vgg19, w.dir)
    trainer = Trainer(model, train_set, val_set, config, args.out, collate=collate_samples, vgg=vgg)
    return trainer, section


class SetupError(ValueError):
    """Bad params, arguments or inputs, found before training wrote anything (exit code 2)."""


def run(args: argparse.Namespace) -> dict:
    ctx = distributed_context()
    start = time.perf_counter()
    try:
        trainer, section = build_trainer(args)
    except (FileNotFoundError, ValueError) as exc:  # an error of the run itself keeps its traceback
        raise SetupError(str(exc)) from exc
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
        model_name = getattr(args, "model", "dmdnet")
        variant = section.variants_of(model_name)[args.variant]
        schedule = variant.schedule.model_dump(mode="json") if isinstance(variant, VariantConfig) else None
        summary = {
            "model": model_name,
            "variant": args.variant,
            "description": variant.description,
            "paper_row": variant.paper_row,
            "network": config_to_dict(trainer.model.config),
            "schedule": schedule,
            "steps": trainer.step,
            "batch_size": trainer.config.batch_size,
            "lr": trainer.config.lr,
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
    p.add_argument("--model", choices=MODELS, default="dmdnet", help="which network (default: dmdnet)")
    p.add_argument(
        "--variant",
        default=None,
        help="a key of train.variants (DMDNet) or train.<model>_variants; default: the model name",
    )
    p.add_argument("--dataset", type=Path, default=Path("data/celebref"))
    p.add_argument("--out", type=Path, default=Path("models/dmdnet"))
    p.add_argument("--resume", action="store_true", help="continue from <out>/checkpoints/last.pt")
    return p


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    args.variant = args.variant or args.model
    try:
        run(args)
    except SetupError as exc:
        return error(exc, EXIT_BAD_INPUT)
    finally:
        if torch.distributed.is_initialized():
            torch.distributed.destroy_process_group()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
