"""GFRNet checkpoints trained here: ``generator.pth`` = ``{"format": "gfrnet-generator", "version": 1,
"config": {…GFRNetConfig fields…}, "state_dict": …}``.

No official 512² GFRNet exists (the authors' release is Lua Torch at 256²), so there is one layout, this
one. Loading is strict: every key and shape of the configured network, ``weights_only=True``.
"""

from __future__ import annotations

import pickle
import zipfile
from pathlib import Path
from typing import Any

import torch

from celebref.atomic import atomic_path
from dmdnet.official import CheckpointError, describe_checkpoint, torch_load_error
from dmdnet.trained import config_from_dict, config_to_dict
from gfrnet.network import GFRNet, GFRNetConfig

__all__ = ["GFRNET_FORMAT", "save_gfrnet", "read_gfrnet_config", "load_gfrnet"]

GFRNET_FORMAT = "gfrnet-generator"
_VERSION = 1


def save_gfrnet(model: GFRNet, path: str | Path) -> Path:
    """Write ``model``'s weights and config atomically; returns ``path``."""
    payload = {
        "format": GFRNET_FORMAT,
        "version": _VERSION,
        "config": config_to_dict(model.config),
        "state_dict": {k: v.detach().float().cpu().contiguous() for k, v in model.state_dict().items()},
    }
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        torch.save(payload, tmp)
    return path


def _read(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise FileNotFoundError(
            f"GFRNet checkpoint not found: {path} (written by `python -m dmdnet.train --model gfrnet`, "
            "the train_gfrnet stage)"
        )
    try:
        obj: Any = torch.load(path, map_location="cpu", weights_only=True)
    except (RuntimeError, pickle.UnpicklingError, EOFError, zipfile.BadZipFile, OSError, ValueError) as exc:
        raise CheckpointError(f"cannot read GFRNet checkpoint {path}: {torch_load_error(exc)}") from exc
    if not isinstance(obj, dict) or obj.get("format") != GFRNET_FORMAT:
        raise CheckpointError(
            f"{path}: {describe_checkpoint(obj)}, not a GFRNet checkpoint (expected a generator.pth of "
            f"format {GFRNET_FORMAT!r}, written by python -m dmdnet.train --model gfrnet)"
        )
    return obj


def read_gfrnet_config(path: str | Path) -> GFRNetConfig:
    """The network config stored in ``path`` (no weights loaded)."""
    return config_from_dict(_read(Path(path)).get("config") or {}, GFRNetConfig)


def load_gfrnet(path: str | Path, *, device: str | torch.device = "cpu") -> GFRNet:
    """The GFRNet of ``path`` in eval mode without gradients.

    Raises ``FileNotFoundError`` (the message says which command writes it) or
    :class:`~dmdnet.official.CheckpointError` (unreadable, another format, wrong keys or shapes).
    """
    obj = _read(Path(path))
    config = config_from_dict(obj.get("config") or {}, GFRNetConfig)
    model = GFRNet(config=config)
    try:
        model.load_state_dict(obj["state_dict"], strict=True)
    except (KeyError, RuntimeError) as exc:
        raise CheckpointError(f"{path}: weights do not match the stored GFRNet config: {exc}") from exc
    return model.to(device).eval().requires_grad_(False)
