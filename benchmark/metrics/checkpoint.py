"""Load a pretrained state dict from a resolved file and meet it with a network through a key map."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import torch

__all__ = ["load_state_dict_file", "load_mapped"]


def load_state_dict_file(path: str | Path) -> dict[str, torch.Tensor]:
    """Read a checkpoint holding a plain state dict (``torch.load(..., weights_only=True)``, on CPU)."""
    path = Path(path)
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises several types for bad or foreign files
        raise ValueError(f"{path}: not a loadable state dict ({type(exc).__name__}: {exc})") from exc
    if not isinstance(state, Mapping) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ValueError(f"{path}: expected a mapping of parameter names to tensors")
    return dict(state)


def load_mapped(
    module: torch.nn.Module,
    state: Mapping[str, torch.Tensor],
    key_map: Mapping[str, str],
    *,
    source: str,
    ignore_prefixes: tuple[str, ...] = (),
) -> None:
    """Copy ``state[src]`` into ``module``'s ``dst`` for every ``dst → src`` of ``key_map``.

    Strict: every mapped source key must exist with the destination's shape, and every key of ``state``
    must be mapped unless it starts with one of ``ignore_prefixes``. ``source`` names the file in errors.
    """
    own = module.state_dict()
    missing = sorted(src for src in key_map.values() if src not in state)
    unknown_dst = sorted(dst for dst in key_map if dst not in own)
    used = set(key_map.values())
    unexpected = sorted(k for k in state if k not in used and not k.startswith(ignore_prefixes))
    if missing or unexpected or unknown_dst:
        raise ValueError(
            f"{source}: state dict does not match the network: missing {missing[:8]}, "
            f"unexpected {unexpected[:8]}, unknown targets {unknown_dst[:8]}"
        )
    bad = [
        f"{src} {tuple(state[src].shape)} -> {dst} {tuple(own[dst].shape)}"
        for dst, src in key_map.items()
        if state[src].shape != own[dst].shape
    ]
    if bad:
        raise ValueError(f"{source}: shape mismatch: {'; '.join(bad[:8])}")
    with torch.no_grad():
        for dst, src in key_map.items():
            own[dst].copy_(state[src])
