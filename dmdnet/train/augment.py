"""Training-time augmentation of aligned faces: horizontal flip with its landmarks and boxes, colour jitter,
and the per-sample random generator that makes every draw reproducible.

Landmarks are ``(68, 2)`` ``(x, y)`` in iBUG order, pixel centres at integer coordinates, so a flip maps
``x`` to ``W − 1 − x``; points are then renumbered (a subject's right eye, points 36–41, becomes the image's
other eye, 42–47, and so on), so that every index keeps its meaning after the flip.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from degrade.model import sample_rng
from dmdnet.boxes import component_boxes

__all__ = ["IBUG68_MIRROR", "ColorJitter", "color_jitter", "flip_face", "sample_rng"]


def _mirror_permutation() -> np.ndarray:
    pairs = [(i, 16 - i) for i in range(17)]  # jaw
    pairs += [(17 + i, 26 - i) for i in range(5)]  # eyebrows
    pairs += [(27 + i, 27 + i) for i in range(4)]  # nose bridge
    pairs += [(31 + i, 35 - i) for i in range(5)]  # nostrils
    pairs += list(zip((36, 37, 38, 39, 40, 41), (45, 44, 43, 42, 47, 46), strict=True))  # eyes
    pairs += [(48 + i, 54 - i) for i in range(7)]  # outer lip, upper
    pairs += [(55 + i, 59 - i) for i in range(5)]  # outer lip, lower
    pairs += [(60 + i, 64 - i) for i in range(5)]  # inner lip, upper
    pairs += [(65 + i, 67 - i) for i in range(3)]  # inner lip, lower
    perm = np.full(68, -1)
    for a, b in pairs:
        perm[a], perm[b] = b, a
    assert (perm >= 0).all()
    return perm


#: ``flipped[k] = mirrored[IBUG68_MIRROR[k]]``: the iBUG-68 index each point takes after a horizontal flip.
IBUG68_MIRROR: np.ndarray = _mirror_permutation()


def flip_face(image: np.ndarray, landmarks: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Mirror an aligned face left to right.

    Args:
        image: ``(H, W, C)`` array.
        landmarks: ``(68, 2)`` iBUG points in pixels of ``image``.

    Returns:
        The flipped image (a copy), its landmarks (mirrored and renumbered, eyes swapped) and its
        ``(4, 4)`` component boxes recomputed from them.
    """
    pts = np.asarray(landmarks, dtype=np.float64)
    if image.ndim != 3 or pts.shape != (68, 2):
        raise ValueError(f"expected an (H, W, C) image and (68, 2) landmarks, got {image.shape}, {pts.shape}")
    width = image.shape[1]
    mirrored = np.stack([(width - 1) - pts[:, 0], pts[:, 1]], axis=1)
    flipped = mirrored[IBUG68_MIRROR]
    return np.ascontiguousarray(image[:, ::-1]), flipped, component_boxes(flipped)


@dataclass(frozen=True)
class ColorJitter:
    """Factors drawn uniformly from ``[1 − x, 1 + x]`` for brightness, contrast and saturation."""

    brightness: float = 0.1
    contrast: float = 0.1
    saturation: float = 0.1

    def __post_init__(self) -> None:
        if not all(0 <= v < 1 for v in (self.brightness, self.contrast, self.saturation)):
            raise ValueError(f"colour jitter amounts must lie in [0, 1), got {self}")


def color_jitter(image: np.ndarray, rng: np.random.Generator, jitter: ColorJitter) -> np.ndarray:
    """RGB ``uint8 (H, W, 3)`` with brightness, contrast and saturation scaled (in that order)."""
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"expected RGB uint8 (H, W, 3), got {image.dtype} {image.shape}")
    b, c, s = (rng.uniform(1 - x, 1 + x) for x in (jitter.brightness, jitter.contrast, jitter.saturation))
    x = image.astype(np.float64) * b
    x = (x - x.mean()) * c + x.mean()
    gray = x @ np.array([0.299, 0.587, 0.114])  # ITU-R BT.601 luma
    x = (x - gray[..., None]) * s + gray[..., None]
    return np.clip(np.rint(x), 0, 255).astype(np.uint8)
