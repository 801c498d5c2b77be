"""Generator checkpoints trained here: written once, loaded by the restore CLI and the benchmark.

Two layouts load through :func:`load_generator`:

- the official ``DMDNet.pth`` layout (also what training exports for the release configuration), through
  :func:`dmdnet.official.load_official`;
- this toolkit's own file for every configuration (the Table 3 variants have no official layout):
  ``{"format": "dmdnet-generator", "version": 1, "config": {…DMDNetConfig fields…}, "state_dict": {…}}``
  with spectral norm already folded into plain conv weights, written atomically, read with
  ``weights_only=True``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Collection, Mapping
from pathlib import Path
from typing import Any, TypeVar

import torch

from celebref.atomic import atomic_path
from dmdnet.network import TASKS, DMDNet, DMDNetConfig, modules_for
from dmdnet.official import OFFICIAL_URL, CheckpointError, describe_checkpoint, load_official

__all__ = ["GENERATOR_FORMAT", "config_to_dict", "config_from_dict", "save_generator", "load_generator"]

_C = TypeVar("_C")

GENERATOR_FORMAT = "dmdnet-generator"
_VERSION = 1


def config_to_dict(config: Any) -> dict[str, Any]:
    """A frozen config dataclass as plain values (lists for tuples), so a file loads with ``weights_only``."""

    def plain(value: Any) -> Any:
        return [plain(v) for v in value] if isinstance(value, (tuple, list)) else value

    return {f.name: plain(getattr(config, f.name)) for f in dataclasses.fields(config)}


def config_from_dict(values: Mapping[str, Any], cls: type[_C] = DMDNetConfig) -> _C:  # type: ignore[assignment]
    """Inverse of :func:`config_to_dict` for the config class ``cls``; unknown fields are an error."""

    def as_tuple(value: Any) -> Any:
        return tuple(as_tuple(v) for v in value) if isinstance(value, list) else value

    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise CheckpointError(f"unknown {cls.__name__} fields {unknown}")
    try:
        return cls(**{k: as_tuple(v) for k, v in values.items()})
    except (TypeError, ValueError) as exc:
        raise CheckpointError(f"bad {cls.__name__} in checkpoint: {exc}") from exc


def save_generator(model: DMDNet, path: str | Path) -> Path:
    """Write ``model`` (spectral norm folded; see :func:`dmdnet.train.spectral.fold_for_inference`)."""
    state = {k: v.detach().float().cpu().contiguous() for k, v in model.state_dict().items()}
    if any(".parametrizations." in k for k in state):
        raise ValueError("fold the spectral norm before saving a generator (fold_for_inference)")
    payload = {
        "format": GENERATOR_FORMAT,
        "version": _VERSION,
        "config": config_to_dict(model.config),
        "state_dict": state,
    }
    path = Path(path)
    with atomic_path(path) as tmp:
        torch.save(payload, tmp)
    return path


def load_generator(
    path: str | Path, *, device: str | torch.device = "cpu", tasks: Collection[str] = TASKS
) -> DMDNet:
    """A DMDNet in eval mode from either layout (see the module docstring).

    Raises:
        FileNotFoundError: no such file.
        CheckpointError: unreadable, or neither layout (the message says what the file is instead), or a
            state dict that does not fit its config.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(
            f"DMDNet checkpoint not found: {path} (the official DMDNet.pth is at {OFFICIAL_URL}; "
            "python -m dmdnet.train writes generator.pth)"
        )
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except Exception:  # not a zip-format file of ours: the official loader reads (or explains) the rest
        return load_official(path, device=device, tasks=tasks)
    if not isinstance(payload, Mapping) or "format" not in payload:
        return load_official(path, device=device, tasks=tasks)
    if payload.get("format") != GENERATOR_FORMAT:  # another model's file, or a dictionary
        raise CheckpointError(
            f"{path}: {describe_checkpoint(payload)}, not a DMDNet checkpoint (expected the official "
            f"DMDNet.pth or a generator.pth of format {GENERATOR_FORMAT!r})"
        )
    if payload.get("version") != _VERSION:
        raise CheckpointError(f"{path}: generator file version {payload.get('version')}, expected {_VERSION}")
    config = config_from_dict(payload["config"])
    with torch.device("meta"):
        model = DMDNet(config=config)
    model.keep_tasks(tasks)
    keep = modules_for(tasks)
    state = {k: v for k, v in payload["state_dict"].items() if k.split(".", 1)[0] in keep}
    try:
        model.load_state_dict(
            {k: v.to(device=device, dtype=torch.float32) for k, v in state.items()}, strict=True, assign=True
        )
    except RuntimeError as exc:
        raise CheckpointError(f"{path}: the state dict does not fit its config ({exc})") from exc
    return model.eval().requires_grad_(False)
