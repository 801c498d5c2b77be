"""Deterministic DMDNet weights in the official checkpoint layout, generated from a key list.

These are *not* trained weights: they reproduce the rule of the numerical fixture in
``fixtures/dmdnet_official`` (its README, section 3) so that the network can be checked against outputs
of the official implementation without the real checkpoint, and so that tests and benchmarks have a
full-size model to run. The rule, per state-dict key (each key has its own generator):

* ``seed = zlib.crc32(key.encode("utf-8"))``; one ``torch.randn(shape, generator=g)`` call in float32 → R;
* ``*_mem_*`` (generic dictionary buffers): R;
* ``*weight_orig``: R / sqrt(prod(shape[1:])) in float32;
* ``*.bias``: R × 0.01;
* ``*weight_u`` / ``*weight_v``: from a float64 thin SVD of the layer's ``weight_orig`` reshaped to
  ``(out, in·kh·kw)``: u0 = first left singular vector, v0 = first right one, both negated when the entry of
  u0 with the largest magnitude is negative; ``weight_u = 0.7·u0`` and ``weight_v = v0`` (cast to float32).
  The 0.7 makes every spectrally normalised conv's gain 1/0.7 so activations do not vanish.
"""

from __future__ import annotations

import json
import math
import zlib
from collections import OrderedDict
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

import torch

__all__ = ["U_FACTOR", "key_seed", "top_singular_pair", "generate_fixture_state_dict", "load_manifest_shapes"]

U_FACTOR = 0.7


def key_seed(key: str) -> int:
    """CRC-32 of the key's UTF-8 bytes as an unsigned 32-bit integer."""
    return zlib.crc32(key.encode("utf-8")) & 0xFFFFFFFF


def _randn(key: str, shape: Sequence[int]) -> torch.Tensor:
    g = torch.Generator(device="cpu")
    g.manual_seed(key_seed(key))
    return torch.randn(tuple(shape), generator=g, dtype=torch.float32)


def top_singular_pair(weight: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(u0, v0) of ``weight`` reshaped to ``(out, -1)``, float64, with the sign rule applied."""
    mat = weight.reshape(weight.shape[0], -1).to(torch.float64)
    u, _, vh = torch.linalg.svd(mat, full_matrices=False)
    u0, v0 = u[:, 0], vh[0, :]
    if u0[u0.abs().argmax()] < 0:
        u0, v0 = -u0, -v0
    return u0, v0


def generate_fixture_state_dict(
    shapes: Mapping[str, Sequence[int]] | Iterable[tuple[str, Sequence[int]]],
) -> OrderedDict[str, torch.Tensor]:
    """Generate the fixture rule's float32 tensors for every ``key -> shape`` (order is kept).

    Raises ``ValueError`` for a key of an unknown kind, or a ``weight_u``/``weight_v`` without its
    ``weight_orig``.
    """
    items = list(shapes.items()) if isinstance(shapes, Mapping) else list(shapes)
    shape_of = {k: tuple(int(s) for s in v) for k, v in items}
    out: OrderedDict[str, torch.Tensor] = OrderedDict()
    pairs: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}
    for key, _ in items:
        shape = shape_of[key]
        if "_mem_" in key:
            out[key] = _randn(key, shape)
        elif key.endswith("weight_orig"):
            fan_in = math.prod(shape[1:])
            out[key] = _randn(key, shape) / math.sqrt(fan_in)
        elif key.endswith(".bias"):
            out[key] = _randn(key, shape) * 0.01
        elif key.endswith("weight_u") or key.endswith("weight_v"):
            base = key[: -len("weight_u")] + "weight_orig"
            if base not in shape_of:
                raise ValueError(f"{key}: no matching {base} in the key list")
            if base not in pairs:
                orig = (
                    out[base]
                    if base in out
                    else _randn(base, shape_of[base]) / math.sqrt(math.prod(shape_of[base][1:]))
                )
                pairs[base] = top_singular_pair(orig)
            u0, v0 = pairs[base]
            out[key] = (u0 * U_FACTOR).float() if key.endswith("weight_u") else v0.float()
        else:
            raise ValueError(
                f"{key}: unknown key kind (expected *_mem_*, *weight_orig, *.bias, *weight_u, *weight_v)"
            )
    return out


def load_manifest_shapes(path: str | Path) -> list[tuple[str, list[int]]]:
    """``(key, shape)`` pairs in official order from a fixture ``weights_manifest.json``."""
    with Path(path).open("r", encoding="utf-8") as fh:
        manifest = json.load(fh)
    return [(e["key"], list(e["shape"])) for e in manifest["entries"]]
