"""ASFFNet checkpoints trained here, written in the official ``ASFFNet512.pth`` layout.

The file is ``{"params": <official state dict>, "format": "asffnet-generator", "version": 1, "config":
{…ASFFNetConfig fields…}}``: the official test script (``torch.load(…)["params"]``) and
:func:`asffnet.official.load_official` read the release configuration unchanged, and :func:`load_asffnet`
reads any configuration (the demo-size model has narrower layers). Spectral-norm layers keep
``weight_orig`` / ``weight_u`` / ``weight_v`` as the release does; loading folds them.
"""

from __future__ import annotations

import pickle
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from asffnet.network import ASFFNet, ASFFNetConfig
from asffnet.official import MIRROR_URL, OFFICIAL_URL, CheckpointError, load_official
from celebref.atomic import atomic_path
from dmdnet.official import describe_checkpoint, torch_load_error
from dmdnet.trained import config_from_dict, config_to_dict

__all__ = ["ASFFNET_FORMAT", "save_asffnet", "read_asffnet", "load_asffnet"]

ASFFNET_FORMAT = "asffnet-generator"
_VERSION = 1


def save_asffnet(state: Mapping[str, torch.Tensor], config: ASFFNetConfig, path: str | Path) -> Path:
    """Write an official-layout state dict (:func:`dmdnet.train.spectral.export_layers`) with its config."""
    payload = {
        "params": {k: v.detach().float().cpu().contiguous() for k, v in state.items()},
        "format": ASFFNET_FORMAT,
        "version": _VERSION,
        "config": config_to_dict(config),
    }
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        torch.save(payload, tmp)
    return path


def read_asffnet(path: str | Path) -> tuple[Mapping[str, torch.Tensor], ASFFNetConfig]:
    """The official-layout state dict of ``path`` and its config (the release's for an official file).

    Raises:
        FileNotFoundError: no file (the message names where the official one is downloaded).
        CheckpointError: unreadable, or not a state dict.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(
            f"ASFFNet checkpoint not found: {path}. A model trained here is written by "
            f"`python -m dmdnet.train --model asffnet`; the official ASFFNet512.pth is at {OFFICIAL_URL} "
            f"(mirror: {MIRROR_URL})."
        )
    try:
        obj: Any = torch.load(path, map_location="cpu", weights_only=True)
    except (RuntimeError, pickle.UnpicklingError, EOFError, zipfile.BadZipFile, OSError, ValueError) as exc:
        raise CheckpointError(f"cannot read ASFFNet checkpoint {path}: {torch_load_error(exc)}") from exc
    if not isinstance(obj, Mapping):
        raise CheckpointError(f"{path}: expected a state dict, got {type(obj).__name__}")
    if "format" in obj and obj.get("format") != ASFFNET_FORMAT:  # another model's file
        raise CheckpointError(
            f"{path}: {describe_checkpoint(obj)}, not an ASFFNet checkpoint (expected the official "
            f"ASFFNet512.pth or a generator.pth of format {ASFFNET_FORMAT!r})"
        )
    config = ASFFNetConfig()
    if obj.get("format") == ASFFNET_FORMAT:
        config = config_from_dict(obj.get("config") or {}, ASFFNetConfig)
    state = obj["params"] if isinstance(obj.get("params"), Mapping) else obj
    return state, config


def load_asffnet(
    path: str | Path, *, device: str | torch.device = "cpu", dtype: torch.dtype = torch.float32
) -> ASFFNet:
    """An ASFFNet for inference (eval mode, spectral norm folded) from a file trained here or official."""
    state, config = read_asffnet(path)
    try:
        return load_official(state, config=config, device=device, dtype=dtype)
    except CheckpointError as exc:
        raise CheckpointError(f"{path}: {exc}") from exc
