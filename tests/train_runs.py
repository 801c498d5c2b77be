"""Helpers of the training tests: a small params file, the one- vs two-process (gloo DDP) comparison, the
in-process loop config and the exact-resume check."""

from __future__ import annotations

import csv
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch
import yaml

from dmdnet.train.losses import LossWeights
from dmdnet.train.trainer import Trainer, TrainerConfig


def train_params(
    tmp_path: Path, *, losses: dict | None = None, trainer: dict | None = None, **runs: Any
) -> Path:
    """``params.yaml`` for a 2-step run of batch 2 on the tiny fixture dataset; ``runs`` adds e.g.
    ``variants={...}`` or ``gfrnet_variants={...}`` under ``train``."""
    params = {
        "degrade": {"ranges": {}},
        "train": {
            "seed": 1,
            "data": {"max_references": 1},
            "trainer": {
                "steps": 2,
                "batch_size": 2,
                "val_every": 100,
                "checkpoint_every": 100,
                "log_every": 1,
                **(trainer or {}),
            },
            "losses": losses or {"perceptual": 0, "style": 0},
            "discriminator": {"width": 4, "depth": 2},
            "variants": {},
            **runs,
        },
    }
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(params))
    return path


def train_cli(args: list[str]) -> None:
    """Run ``python <args>`` and fail the test with its stderr if it fails."""
    proc = subprocess.run([sys.executable, *args], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]


#: What the DDP tests compare: plain SGD, whose update is ``lr · gradient``. DDP guarantees that the
#: gradients averaged over ranks equal the one-process gradients up to the order of the reduction (relative
#: rounding of a few float32 ulps, about 1e-6). The weights then agree within ``steps · lr · 1e-6 · |g|``:
#: the tiny DMDNet's gradients reach |g| ≈ 130 (0.65 of movement in 5 steps of lr 1e-3), a bound of 7e-7
#: (measured: 1.9e-7 on an AVX2 EPYC), well below ``DDP_ATOL``, while a wrong average (a sum, a missing
#: rank, a step on one rank's data) moves them by a whole ``lr · g``. The helper also requires the
#: training to move some weight by more than 1000 × ``DDP_ATOL``. Adam is not compared: it moves every
#: weight by about lr whatever the size of its gradient, so a near-zero gradient whose sign differs between
#: reduction orders shows as a full step.
DDP_TRAINER = {"optimizer": "sgd", "lr": 1e-3}
DDP_RTOL, DDP_ATOL = 1e-5, 1e-5


def one_and_two_processes(
    tmp_path: Path, args: list[str], *, port: int, steps: int, losses: tuple[str, ...]
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Train with ``args`` (params with ``DDP_TRAINER``) in one process and in two gloo DDP processes of the
    same global batch.

    Asserts both logs have ``steps`` rows with the same ``losses`` (rel 1e-5), every float tensor of the two
    final checkpoints' ``model`` and ``disc`` agrees within ``DDP_RTOL`` / ``DDP_ATOL``, and the training
    moved the weights by far more than that (so the comparison could fail). Returns the two checkpoints.
    """
    from dmdnet.train.__main__ import _parser, build_trainer

    train_cli(["-m", "dmdnet.train", *args, "--out", str(tmp_path / "one")])
    dist = ["-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", str(port)]
    train_cli([*dist, "-m", "dmdnet.train", *args, "--out", str(tmp_path / "two")])
    logs = [list(csv.DictReader((tmp_path / run / "log.csv").open())) for run in ("one", "two")]
    assert len(logs[0]) == len(logs[1]) == steps
    for a, b in zip(*logs, strict=True):
        for name in losses:
            assert float(a[name]) == pytest.approx(float(b[name]), rel=1e-5), name
    one = torch.load(tmp_path / "one" / "checkpoints" / "last.pt", weights_only=True)
    two = torch.load(tmp_path / "two" / "checkpoints" / "last.pt", weights_only=True)
    parsed = _parser().parse_args([*args, "--out", str(tmp_path / "start")])
    parsed.variant = parsed.variant or parsed.model
    start, _ = build_trainer(parsed)
    initial = start.model.state_dict()
    moved = apart = 0.0
    for part in ("model", "disc"):
        for k, v in one[part].items():
            if isinstance(v, torch.Tensor) and v.is_floating_point():
                apart = max(apart, float((two[part][k] - v).abs().max()))
                torch.testing.assert_close(two[part][k], v, rtol=DDP_RTOL, atol=DDP_ATOL, msg=f"{part}.{k}")
                if part == "model" and k in initial and initial[k].shape == v.shape:
                    moved = max(moved, float((v - initial[k]).abs().max()))
    print(f"one vs two processes: weights at most {apart:.2e} apart; training moved them up to {moved:.2e}")
    assert moved > 1000 * DDP_ATOL, f"training moved no weight by more than {moved:.2e}"
    assert '"processes": 2' in (tmp_path / "two" / "summary.json").read_text()
    return one, two


def tiny_trainer_config(steps: int, **changes: Any) -> TrainerConfig:
    """The loop of the in-process training tests: batch 2, no VGG terms, tiny discriminators, everything
    (validation, samples, checkpoints, logs) every step or two."""
    base: dict[str, Any] = {
        "steps": steps,
        "batch_size": 2,
        "losses": LossWeights(perceptual=0, style=0),
        "disc_width": 4,
        "disc_depth": 2,
        "val_every": 2,
        "val_images": 1,
        "sample_images": 1,
        "checkpoint_every": 2,
        "log_every": 1,
    }
    return TrainerConfig(**{**base, **changes})


def assert_resume_is_exact(
    make_trainer: Callable[[Path, int], Trainer], tmp_path: Path
) -> tuple[Trainer, Trainer]:
    """4 steps straight vs 2, stop, resume, 2: bit-identical model, discriminator, optimiser keys and data
    position, and no step logged twice. ``make_trainer(out, steps)`` builds a fresh trainer."""
    straight = make_trainer(tmp_path / "a", 4)
    straight.fit()
    first = make_trainer(tmp_path / "b", 4)
    first.fit(stop_after=2)
    del first
    resumed = make_trainer(tmp_path / "b", 4)
    resumed.fit(resume=True)
    a, b = straight.state_dict(), resumed.state_dict()
    for part in ("model", "disc"):
        assert a[part].keys() == b[part].keys()
        for k, v in a[part].items():
            if isinstance(v, torch.Tensor):
                assert torch.equal(v, b[part][k]), f"{part}.{k}"
    assert a["opt_g"]["state"].keys() == b["opt_g"]["state"].keys()
    assert (a["epoch"], a["position"]) == (b["epoch"], b["position"])
    log = (tmp_path / "b" / "log.csv").read_text().splitlines()
    assert [row.split(",")[0] for row in log[1:]] == ["1", "2", "3", "4"]
    return straight, resumed
