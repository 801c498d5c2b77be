"""Learning check: train the demo-size DMDNet on the demo's training faces, score it on held-out faces.

    python -m benchmark.bench_train_dmdnet [--params params.yaml] [--steps N] [--out /tmp/bench_train]
    python -m benchmark.bench_train_dmdnet --model asffnet      # ASFFNet* (--model gfrnet: GFRNet*)

Trains the ``train.variants.<variant>`` of the params (default: the demo-size ``dmdnet``, its step budget
unless ``--steps``) with the shared trainer on ``<dataset>/train``, then runs the benchmark's evaluation
(PSNR / SSIM, the report's conventions) of the trained checkpoint with and without references beside
bicubic (``lq``) on the held-out ×4 and ×8 test sets of ``<lq>`` (made by the ``degrade`` stage), and
prints one table with the CPU and the training time. Needs ``dvc repro degrade`` (or the demo) first.
"""

from __future__ import annotations

import argparse
import re
import time
from pathlib import Path

import torch
import yaml

from benchmark.evaluate import run as evaluate_run
from benchmark.evaluate_config import EvaluateConfig
from celebref.hardware import capabilities
from dmdnet.train.__main__ import run as train_run
from dmdnet.train.config import MODELS


def _with_budget(description: str, budget: int, steps: int) -> str:
    """A variant's description with this run's step budget in place of the configured one."""
    if steps == budget:
        return description
    configured = re.compile(rf"(?<![\d.]){budget} steps\b")
    if configured.search(description):  # e.g. "…, 120 steps of 2, …" → "…, 20 steps of 2, …"
        return configured.sub(f"{steps} steps", description)
    return f"{description}; this run: {steps} steps in all, not {budget} (--steps)"


def _params_with(params: Path, out: Path, steps: int | None) -> Path:
    """The params file for this run in ``out``: with ``steps``, every variant's budget (and the
    description that names it) set to ``steps``, its stages scaled along."""
    data = yaml.safe_load(params.read_text())
    if steps is not None:  # a longer budget: every dictionary stage gets the same share of it
        trainer = data["train"]["trainer"]
        runs = ("variants", "asffnet_variants", "gfrnet_variants")
        for variant in (v for key in runs for v in (data["train"].get(key) or {}).values()):
            budget = variant.get("steps") or trainer["steps"]
            schedule = variant.get("schedule") or {}
            if "steps" in schedule:
                schedule["steps"] = [max(1, n * steps // budget) for n in schedule["steps"]]
            if variant.get("warp_steps"):
                variant["warp_steps"] = max(1, variant["warp_steps"] * steps // budget)
            variant["steps"] = steps
            if variant.get("description"):
                variant["description"] = _with_budget(str(variant["description"]), budget, steps)
        trainer["steps"] = steps
    path = out / "params.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(
        prog="python -m benchmark.bench_train_dmdnet", description=__doc__.split("\n")[0]
    )
    p.add_argument("--params", type=Path, default=Path("params.yaml"))
    p.add_argument("--model", choices=MODELS, default="dmdnet")
    p.add_argument("--variant", default=None, help="default: the model name")
    p.add_argument("--dataset", type=Path, default=Path("data/celebref"))
    p.add_argument("--lq", type=Path, default=Path("data/lq"))
    p.add_argument("--steps", type=int, default=None, help="train.trainer.steps (stage lengths scaled along)")
    p.add_argument("--out", type=Path, default=Path("/tmp/bench_train_dmdnet"))
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args(argv)
    if not args.params.is_file():
        p.error(f"params file not found: {args.params}")
    for folder in (args.dataset, args.lq):
        if not folder.is_dir():
            p.error(f"{folder} not found: run `dvc repro degrade` (or `make demo`) first")
    if args.steps is not None and args.steps < 1 or args.threads < 1:
        p.error("--steps and --threads must be >= 1")
    torch.set_num_threads(args.threads)
    args.out.mkdir(parents=True, exist_ok=True)
    params = _params_with(args.params, args.out, args.steps)
    model_dir = args.out / "model"
    start = time.perf_counter()
    summary = train_run(
        argparse.Namespace(
            params=params,
            model=args.model,
            variant=args.variant or args.model,
            dataset=args.dataset,
            out=model_dir,
            resume=False,
        )
    )
    train_s = time.perf_counter() - start
    checkpoint = model_dir / "generator.pth"
    if args.model == "asffnet":
        methods, labels = ["lq", f"asffnet:{checkpoint}"], ["bicubic (lq)", "trained, 1 reference"]
    elif args.model == "gfrnet":
        methods, labels = ["lq", f"gfrnet:{checkpoint}"], ["bicubic (lq)", "trained, frontal reference"]
    else:
        methods = ["lq", f"dmdnet-generic:{checkpoint}", f"dmdnet:{checkpoint}"]
        labels = ["bicubic (lq)", "trained, generic", "trained, + references"]
    config = EvaluateConfig(methods=methods, metrics=["psnr", "ssim"], num_threads=args.threads)
    result = evaluate_run(config, args.dataset, args.lq, args.out / "results", args.out / "metrics")

    cpu = capabilities("cpu").name
    print(f"\nlearning check on {cpu}, {args.threads} threads, fp32")
    print(
        f"trained {summary['steps']} steps × batch {summary['batch_size']} on {summary['train_faces']} "
        f"training faces in {train_s:.0f} s ({args.model}, {summary['description']}); "
        "scored on the held-out test split"
    )
    print(f"{'method':<24} {'task':<4} {'N':>3} {'PSNR':>8} {'SSIM':>7}")
    for name, labelled in zip(methods, labels, strict=True):
        entry = result["methods"][name]
        if not entry.get("available", True):
            print(f"{labelled:<24} unavailable: {entry.get('reason')}")
            continue
        for task, scores in entry["tasks"].items():
            psnr, ssim = (scores["metrics"][k]["value"] for k in ("psnr", "ssim"))
            print(f"{labelled:<24} {task:<4} {scores['n']:>3} {psnr:>8.3f} {ssim:>7.4f}")


if __name__ == "__main__":
    main()
