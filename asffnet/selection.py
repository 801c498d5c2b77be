"""ASFFNet's inputs besides the images: the best reference of a pool and the LQ landmark point mask.

Landmarks are 68 points ``(x, y)`` in the standard iBUG / dlib order, in pixels of the 512² image.

Reference selection (official ``optimal_reference_selection``): for the eye group (brows 17-26 and eyes
36-47) and the mouth group (48-67), fit an affine map from the reference points to the LQ points by least
squares and take the Frobenius norm of its residual; the score is ``1.01·‖E_eyes‖ + 1.49·‖E_mouth‖``
and the smallest score wins (the first on a tie). The score ignores any affine change of the reference
pose, so it measures expression and shape, not alignment.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch

__all__ = ["GROUPS", "reference_score", "reference_scores", "select_reference", "point_mask"]

#: (landmark indices, weight) of the two groups of the selection score.
GROUPS: tuple[tuple[tuple[int, ...], float], ...] = (
    ((*range(17, 27), *range(36, 48)), 1.01),
    (tuple(range(48, 68)), 1.49),
)

#: Landmarks drawn into the point mask (the jaw 0-16 is left out).
MASK_POINTS = range(17, 68)
#: Half width of a mask window, and the margin of the bounds check (``1 < c < size − 2``).
_HALF, _MARGIN = 3, 2


def _as_points(landmarks: np.ndarray | Sequence[Sequence[float]], what: str) -> np.ndarray:
    arr = np.asarray(landmarks, dtype=np.float64)
    if arr.shape != (68, 2):
        raise ValueError(f"{what} must be 68 (x, y) landmarks, got shape {arr.shape}")
    return arr


def _affine_residual(src: np.ndarray, dst: np.ndarray) -> float:
    """Frobenius norm of ``A X − B`` for the least-squares affine map ``A = [src, 1] → B = dst``.

    Solved through the normal equations with an explicit 3×3 inverse, as the official code does.
    """
    a = np.concatenate([src, np.ones((len(src), 1))], axis=1)
    x = np.linalg.inv(a.T @ a) @ a.T @ dst
    return float(np.linalg.norm(a @ x - dst))


def reference_score(
    lq_landmarks: np.ndarray | Sequence[Sequence[float]],
    ref_landmarks: np.ndarray | Sequence[Sequence[float]],
) -> float:
    """Weighted affine-fit landmark error of one reference against the LQ face (lower is better)."""
    lq = _as_points(lq_landmarks, "LQ landmarks")
    ref = _as_points(ref_landmarks, "reference landmarks")
    return sum(weight * _affine_residual(ref[list(idx)], lq[list(idx)]) for idx, weight in GROUPS)


def reference_scores(
    lq_landmarks: np.ndarray | Sequence[Sequence[float]],
    pool: Sequence[np.ndarray | Sequence[Sequence[float]]],
) -> np.ndarray:
    """Scores ``(K,)`` of every reference of the pool, in pool order."""
    return np.array([reference_score(lq_landmarks, ref) for ref in pool], dtype=np.float64)


def select_reference(
    lq_landmarks: np.ndarray | Sequence[Sequence[float]],
    pool: Sequence[np.ndarray | Sequence[Sequence[float]]],
) -> int:
    """Index of the pool's best reference (smallest score; the first one on a tie)."""
    if len(pool) == 0:
        raise ValueError("the reference pool is empty")
    return int(np.argmin(reference_scores(lq_landmarks, pool)))


def point_mask(landmarks: np.ndarray | torch.Tensor, size: int = 512) -> torch.Tensor:
    """The official point mask ``(B, 1, size, size)`` float32 of ``(B, 68, 2)`` (or ``(68, 2)``) landmarks.

    Every landmark 17-67 with ``1 < x < size − 2`` and ``1 < y < size − 2`` sets the window of rows
    ``floor(y) − 3 … ceil(y) + 2`` and columns ``floor(x) − 3 … ceil(x) + 2`` to 1 (6 wide for a whole
    coordinate, 7 for a fractional one), cut at the far edge. A window starting above or left of the image
    (``c < 3``) writes nothing at all: the official Python slice reads the negative start from the end.
    """
    pts = np.asarray(landmarks.cpu() if isinstance(landmarks, torch.Tensor) else landmarks, dtype=np.float64)
    if pts.ndim == 2:
        pts = pts[None]
    if pts.ndim != 3 or pts.shape[1:] != (68, 2):
        raise ValueError(f"landmarks must be (B, 68, 2) or (68, 2), got shape {pts.shape}")
    mask = torch.zeros(pts.shape[0], 1, size, size)
    for b, sample in enumerate(pts):
        for x, y in sample[MASK_POINTS]:
            if not (1 < x < size - _MARGIN and 1 < y < size - _MARGIN):
                continue
            r0, c0 = math.floor(y) - _HALF, math.floor(x) - _HALF
            if r0 < 0 or c0 < 0:
                continue
            mask[b, 0, r0 : math.ceil(y) + _HALF, c0 : math.ceil(x) + _HALF] = 1.0
    return mask
