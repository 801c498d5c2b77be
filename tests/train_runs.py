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
#: gradients averaged over ranks equal the one-process gradients up to rounding: another reduction order,
#: and other kernels for a batch of 1 than of 2 (oneDNN picks its paths by shape, thread count and ISA). A
#: convolution's weight gradient is a float32 sum over N = batch · H · W terms (2 · 512² here), whose
#: rounding in another order is of order √N · 2⁻²⁴ ≈ 4e-5 of the sum. SGD moves each weight by the sum
#: of its gradients, so the two runs agree within about 4e-5 of how far the training moved the weights:
#: ``DDP_REL`` (1e-4) of the largest movement is the tolerance. Measured worst gap / movement, 5 steps:
#: DMDNet 7e-6 (AMD EPYC Zen 5, AVX-512; the same with ONEDNN_MAX_CPU_ISA=AVX2), 3e-7 (AMD EPYC, AVX2
#: only); ASFFNet 1.1e-5; GFRNet 2e-6. A wrong average (a sum, a missing rank, a step on one rank's data)
#: is off by a fraction of the movement itself, ~1e4 times the tolerance. Adam is not compared: it moves
#: every weight by about lr whatever the size of its gradient, so a near-zero gradient whose sign differs
#: between reduction orders shows as a full step. Spectral-norm vectors are compared through their σ.
DDP_TRAINER = {"optimizer": "sgd", "lr": 1e-3}
DDP_REL = 1e-4


def _compared_tensors(state: dict[str, Any]) -> dict[str, torch.Tensor]:
    """The float tensors of a state dict as the DDP tests compare them: spectral-norm power-iteration
    vectors ``_u`` / ``_v`` replaced by the σ = uᵀ W v they give (``<layer>.sigma``). A singular vector moves
    by about ΔW / (σ₁ − σ₂), unbounded where two singular values are close, while σ is stationary in u and
    v and moves with W alone, so σ is what the SGD bound covers."""
    out: dict[str, torch.Tensor] = {}
    for k, v in state.items():
        if not (isinstance(v, torch.Tensor) and v.is_floating_point()) or k.endswith(("._u", "._v")):
            continue
        out[k] = v
        if k.endswith(".original"):
            layer = k.removesuffix("original")
            u, w, vec = state[f"{layer}0._u"], v.flatten(1), state[f"{layer}0._v"]
            out[f"{layer}sigma"] = (u @ w @ vec).reshape(1)
    return out


def one_and_two_processes(
    tmp_path: Path, args: list[str], *, port: int, steps: int, losses: tuple[str, ...]
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Train with ``args`` (params with ``DDP_TRAINER``) in one process and in two gloo DDP processes of the
    same global batch.

    Asserts both logs have ``steps`` rows with the same ``losses`` (rel 1e-5), every float tensor of the two
    final checkpoints' ``model`` and ``disc`` agrees within ``DDP_REL`` of the largest movement of any weight
    from the initial ones, and that training moved them (so the comparison could fail).
    Returns the two checkpoints.
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
    initial = {"model": start.model.state_dict(), "disc": start.disc.state_dict() if start.disc else {}}
    ours, theirs, first = (
        {part: _compared_tensors(run[part]) for part in initial} for run in (one, two, initial)
    )
    moved = max(
        float((v - first[part][k]).abs().max())
        for part in ours
        for k, v in ours[part].items()
        if k in first[part]
    )
    assert moved > 1e-2, f"training moved no weight by more than {moved:.2e}"
    gaps = {
        f"{part}.{k}": float((theirs[part][k] - v).abs().max())
        for part in ours
        for k, v in ours[part].items()
    }
    worst = max(gaps, key=gaps.__getitem__)
    print(
        f"one vs two processes: at most {gaps[worst]:.2e} apart ({worst}); training moved weights {moved:.2e}"
    )
    for part in ours:
        for k, v in ours[part].items():
            torch.testing.assert_close(theirs[part][k], v, rtol=0, atol=DDP_REL * moved, msg=f"{part}.{k}")
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
