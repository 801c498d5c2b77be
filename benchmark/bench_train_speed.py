"""Memory and speed of one full-size DMDNet training step in every dictionary stage.

    python -m benchmark.bench_train_speed [--stages init forward backward frozen] [--items 128 256]
        [--batch 1 2] [--references 2] [--items-per-step 2] [--steps 1] [--threads 2] [--gpu-batch 8]

One training step as the shared trainer runs it (the model's stage hook, ``Trainer._generator_step`` and
``_discriminator_step``, the model's ``end_step``): the released configuration (64 channels) with Y generic
items, each face with ``--references`` references, MSE + VGG-19 perceptual + style + hinge GAN with the
discriminators at scales 1, 2, 4, Adam steps included. Stages: ``init`` (k = ``--items-per-step`` item
faces re-encoded with gradients, the others cached), ``forward`` (the previous step's ground truths written
into the items through γ), ``backward`` (the items as parameters), ``frozen`` (fixed items). The batch is
synthetic and data loading is not timed; the VGG-19 has generated weights (only its cost matters here).

Each (stage, Y, batch) runs in a fresh process: in ``forward`` one step's ground truths are first written
(a forward pass without backward) for the timed steps to read; the cache fill of ``init`` and ``forward``
(F_gen of all Y faces without gradients, once per stage) is setup and not run here; then ``--warmup``
untimed steps (default 0 on the CPU, where a step takes a minute and one-time costs are negligible; at
least 1 on a GPU) and ``--steps`` timed ones. Reported: seconds per step (median), the process's
peak RSS (CPU; the high-water mark of its address space, setup included: the model, the Y item faces and
the dictionary) or the peak CUDA memory allocated (GPU), and that peak relative to the
``frozen`` stage's at the same Y and batch. On a GPU every stage also runs at ``--gpu-batch`` in bf16
autocast where the device supports it: img/s and peak memory.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass

import numpy as np
import torch

from dmdnet.boxes import component_boxes
from dmdnet.network import DMDNetConfig
from dmdnet.train.dmdnet_task import STAGES, DictionarySchedule, DMDNetTraining
from dmdnet.train.losses import LossWeights, VGGFeatures
from dmdnet.train.spectral import hold_power_iteration, power_iteration_step
from dmdnet.train.trainer import DistributedContext, Trainer, TrainerConfig

# a plausible aligned face's landmarks (mean shape, 512² frame) for the component boxes
_EYES_MOUTH = {"le": (190, 240), "re": (322, 240), "mo": (256, 370)}


def _boxes() -> torch.Tensor:
    rng = np.random.default_rng(0)
    pts = np.zeros((68, 2))
    pts[:17] = np.stack([np.linspace(110, 400, 17), 300 + 80 * np.sin(np.linspace(0, np.pi, 17))], 1)
    pts[17:22] = [(150 + 20 * i, 200) for i in range(5)]
    pts[22:27] = [(282 + 20 * i, 200) for i in range(5)]
    pts[27:36] = [(256, 250 + 10 * i) for i in range(9)]
    for start, (cx, cy) in ((36, _EYES_MOUTH["le"]), (42, _EYES_MOUTH["re"])):
        ang = np.linspace(0, 2 * np.pi, 6, endpoint=False)
        pts[start : start + 6] = np.stack([cx + 25 * np.cos(ang), cy + 10 * np.sin(ang)], 1)
    ang = np.linspace(0, 2 * np.pi, 20, endpoint=False)
    pts[48:68] = np.stack([256 + 50 * np.cos(ang), 370 + 20 * np.sin(ang)], 1)
    pts += rng.normal(0, 0.5, pts.shape)
    return torch.from_numpy(component_boxes(pts))


def _batch(size: int, references: int, device: torch.device, seed: int) -> dict:
    gen = torch.Generator().manual_seed(seed)
    boxes = _boxes()
    images = torch.rand(size, 3, 512, 512, generator=gen) * 2 - 1
    refs = [torch.rand(references, 3, 512, 512, generator=gen).to(device) * 2 - 1 for _ in range(size)]
    return {
        "lq": images.to(device),
        "gt": (images.flip(-1)).to(device),
        "boxes": boxes.expand(size, 4, 4).clone(),
        "references": refs,
        "reference_boxes": [boxes.expand(references, 4, 4).clone() for _ in range(size)],
    }


def _generated_vgg() -> VGGFeatures:
    from torchvision.models import vgg19

    torch.manual_seed(0)
    return VGGFeatures({f"features.{k}": v for k, v in vgg19(weights=None).features.state_dict().items()})


def _peak_rss_gib() -> float:
    """This process's peak RSS (``VmHWM``: its own address space, not a spawning parent's)."""
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 2**20
    return float("nan")


@dataclass(frozen=True)
class Case:
    stage: str
    items: int
    batch: int
    references: int
    items_per_step: int
    steps: int
    warmup: int
    device: str
    precision: str


def _model(case: Case) -> DMDNetTraining:
    stages = STAGES[STAGES.index(case.stage) :]
    schedule = DictionarySchedule(
        stages=stages, steps=(10**6,) * (len(stages) - 1), items_per_step=case.items_per_step
    )
    faces = boxes = None
    if case.stage in ("init", "forward"):
        gen = torch.Generator().manual_seed(1)
        faces = torch.rand(case.items, 3, 512, 512, generator=gen) * 2 - 1
        boxes = _boxes().expand(case.items, 4, 4).clone()
    torch.manual_seed(0)
    return DMDNetTraining(DMDNetConfig(items=case.items), schedule, generic_faces=faces, generic_boxes=boxes)


def measure(case: Case) -> dict:
    """One (stage, Y, batch) in this process: seconds per step and peak memory."""
    device = torch.device(case.device)
    model = _model(case)
    config = TrainerConfig(
        steps=case.warmup + case.steps, batch_size=case.batch, losses=LossWeights(), precision=case.precision
    )
    trainer = Trainer(
        model, [], None, config, "/tmp/bench_train_speed", collate=list, vgg=_generated_vgg(),
        context=DistributedContext(), device=device,
    )  # fmt: skip
    hold_power_iteration(model.train())
    # the cache fill (F_gen of all Y faces without gradients, once per stage, a few faces at a time) is
    # setup, not a step: its values do not change what a step costs, so the stored zeros stand in for it
    model._items_stale = False
    if case.stage == "forward":  # the write the timed steps read: one step's ground truths (no backward)
        with torch.no_grad():
            model(_batch(case.batch, case.references, device, seed=-1 % 2**31))
        model.end_step()
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    times = []
    for step in range(case.warmup + case.steps):
        micro = [_batch(case.batch, case.references, device, seed=step)]
        if device.type == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        model.enter_step(step, settled=False)
        for module in (model, trainer.disc):
            power_iteration_step(module)
        _, fakes = trainer._generator_step(micro)
        trainer._discriminator_step(micro, fakes)
        model.end_step()
        if device.type == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t0)
    assert model.stage == case.stage
    per_step = float(np.median(times[case.warmup :]))
    if device.type == "cuda":
        peak = torch.cuda.max_memory_allocated(device) / 2**30
    else:
        peak = _peak_rss_gib()
    return {
        **case.__dict__,
        "s_per_step": per_step,
        "img_per_s": case.batch / per_step,
        "peak_gib": peak,
        "dtype": str(trainer.dtype).removeprefix("torch."),
    }


def _in_fresh_process(case: Case, threads: int) -> dict:
    cmd = [sys.executable, "-m", "benchmark.bench_train_speed", "--one", json.dumps(case.__dict__)]
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
    done = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if done.returncode != 0:
        raise SystemExit(f"error: {case} failed:\n{done.stderr[-2000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def _table(rows: list[dict], memory: str) -> None:
    frozen = {(r["items"], r["batch"]): r["peak_gib"] for r in rows if r["stage"] == "frozen"}
    print(f"| stage | Y | batch | s / step | img/s | {memory} GiB | × frozen |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        base = frozen.get((r["items"], r["batch"]))
        ratio = f"{r['peak_gib'] / base:.2f}" if base else "n/a"
        print(
            f"| {r['stage']} | {r['items']} | {r['batch']} | {r['s_per_step']:.2f} | {r['img_per_s']:.3f} "
            f"| {r['peak_gib']:.2f} | {ratio} |"
        )


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m benchmark.bench_train_speed", description=__doc__.split("\n")[0]
    )
    p.add_argument("--stages", nargs="+", choices=STAGES, default=list(STAGES))
    p.add_argument("--items", nargs="+", type=int, default=[128, 256], help="generic items Y")
    p.add_argument("--batch", nargs="+", type=int, default=[1, 2], help="CPU batches")
    p.add_argument("--gpu-batch", type=int, default=8)
    p.add_argument("--references", type=int, default=2)
    p.add_argument("--items-per-step", type=int, default=2, help="init: item faces encoded with gradients")
    p.add_argument("--steps", type=int, default=1, help="timed steps")
    p.add_argument("--warmup", type=int, default=0, help="untimed steps first (GPU: at least 1)")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--one", help=argparse.SUPPRESS)  # internal: one case as JSON, in this process
    args = p.parse_args(argv)
    if args.one:
        torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "2")))
        print(json.dumps(measure(Case(**json.loads(args.one)))))
        return 0
    if min(args.items) < 1 or min(args.batch) < 1 or args.steps < 1 or args.items_per_step < 1:
        print("error: --items, --batch, --steps and --items-per-step must be >= 1", file=sys.stderr)
        return 2
    from celebref.hardware import capabilities

    stages = sorted(set(args.stages) | {"frozen"}, key=STAGES.index)  # the reference of the ratio
    common = {"references": args.references, "items_per_step": args.items_per_step, "steps": args.steps}
    if min(args.warmup, args.steps) < 0:
        print("error: --warmup must be >= 0", file=sys.stderr)
        return 2
    print(capabilities("cpu").describe())
    print(
        f"CPU fp32, {args.threads} threads, {args.references} references per face, "
        f"k = {args.items_per_step} item faces per init step; peak RSS includes the process's setup"
    )
    rows = []
    for items in args.items:
        for batch in args.batch:
            for stage in stages:
                case = Case(stage, items, batch, device="cpu", precision="fp32", warmup=args.warmup, **common)
                rows.append(_in_fresh_process(case, args.threads))
                print(f"  {stage} Y={items} batch {batch}: {rows[-1]['s_per_step']:.1f} s", file=sys.stderr)
    _table(rows, "peak RSS")
    if not torch.cuda.is_available():
        print("GPU: none here (img/s and peak memory at batch 8 in bf16 need a CUDA device)")
        return 0
    print(capabilities("cuda").describe())
    gpu_rows = [
        _in_fresh_process(
            Case(
                stage,
                items,
                args.gpu_batch,
                device="cuda",
                precision="auto",
                warmup=max(args.warmup, 1),
                **common,
            ),
            args.threads,
        )
        for items in args.items
        for stage in stages
    ]
    print(f"GPU, batch {args.gpu_batch}, {gpu_rows[0]['dtype']}")
    _table(gpu_rows, "peak CUDA")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
