"""Deterministic ASFFNet512 weights in the official checkpoint layout, generated from a key list.

These are *not* trained weights: they reproduce the rule of the numerical fixture in
``tests/data/asffnet512_official`` (its README, section 3), so that the network can be checked against
outputs of the official implementation without the real checkpoint. The rule, per state-dict key (each
key has its own generator, seeded with :func:`dmdnet.fixture_weights.key_seed`, one float32
``torch.randn(shape)`` call → R):

* ``*weight_orig``: R / sqrt(prod(shape[1:])) in float32;
* ``*.weight`` (the 13 plain convolutions): R × c, ``c = sqrt(2 / 1.04) / sqrt(prod(shape[1:]))`` computed
  in float64 and rounded to float32 (Kaiming gain for LeakyReLU 0.2: without it the mask branch hardly
  reaches the output);
* ``*.bias``: R × 0.01;
* ``*weight_u`` / ``*weight_v``: from a float64 thin SVD of the layer's ``weight_orig`` reshaped to
  ``(out, in·kh·kw)``, first singular pair, both negated when the largest-magnitude entry of u0 is
  negative; ``weight_u = 0.8·u0``, ``weight_v = v0`` (float32). The 0.8 gives every spectrally normalised
  conv a gain of 1.25, so activations neither vanish nor saturate the output tanh.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager

import torch

from dmdnet.fixture_weights import key_seed, load_manifest_shapes, top_singular_pair

__all__ = ["U_FACTOR", "PLAIN_GAIN", "generate_fixture_state_dict", "load_manifest_shapes"]

U_FACTOR = 0.8
PLAIN_GAIN = math.sqrt(2.0 / (1.0 + 0.2**2))


def _randn(key: str, shape: Sequence[int]) -> torch.Tensor:
    g = torch.Generator(device="cpu")
    g.manual_seed(key_seed(key))
    return torch.randn(tuple(shape), generator=g, dtype=torch.float32)


def _weight_orig(key: str, shape: Sequence[int]) -> torch.Tensor:
    return _randn(key, shape) / math.sqrt(math.prod(shape[1:]))


@contextmanager
def _one_thread() -> Iterator[None]:
    # MKL's threaded SVD of these small matrices was 40x slower than one thread on a busy 2-core machine
    # (5 s against 0.1 s for 256 × 2304); the result does not depend on the thread count
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(n)


def generate_fixture_state_dict(
    shapes: Mapping[str, Sequence[int]] | Iterable[tuple[str, Sequence[int]]],
) -> OrderedDict[str, torch.Tensor]:
    """The fixture rule's float32 tensors for every ``key -> shape`` (order is kept).

    Raises ``ValueError`` for a key of an unknown kind, or a ``weight_u``/``weight_v`` without its
    ``weight_orig``.
    """
    items = list(shapes.items()) if isinstance(shapes, Mapping) else list(shapes)
    shape_of = {k: tuple(int(s) for s in v) for k, v in items}
    out: OrderedDict[str, torch.Tensor] = OrderedDict()
    pairs: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}
    for key, _ in items:
        shape = shape_of[key]
        if key.endswith("weight_orig"):
            out[key] = _weight_orig(key, shape)
        elif key.endswith(".weight"):
            gain = torch.tensor(PLAIN_GAIN / math.sqrt(math.prod(shape[1:])), dtype=torch.float64).float()
            out[key] = _randn(key, shape) * gain
        elif key.endswith(".bias"):
            out[key] = _randn(key, shape) * 0.01
        elif key.endswith(("weight_u", "weight_v")):
            base = key[: -len("weight_u")] + "weight_orig"
            if base not in shape_of:
                raise ValueError(f"{key}: no matching {base} in the key list")
            if base not in pairs:
                orig = out[base] if base in out else _weight_orig(base, shape_of[base])
                with _one_thread():
                    pairs[base] = top_singular_pair(orig)
            u0, v0 = pairs[base]
            out[key] = (u0 * U_FACTOR).float() if key.endswith("weight_u") else v0.float()
        else:
            raise ValueError(
                f"{key}: unknown key kind (expected *weight_orig, *.weight, *.bias, *weight_u/v)"
            )
    return out
