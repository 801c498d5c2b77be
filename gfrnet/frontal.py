"""How frontal a face is, from the left/right symmetry of its 68 landmarks (dlib / iBUG order).

GFRNet uses one guidance image per face; of a pool of references we take the most frontal one.

The rule, for landmarks ``p_i`` ``(x, y)``:

* ``e_l``, ``e_r``: the eye centres (means of points 36–41 and 42–47); ``u = (e_r − e_l) / |e_r − e_l|``
  is the face's horizontal direction, ``iod = |e_r − e_l|`` its scale;
* the face's vertical axis is the line perpendicular to ``u`` through ``c``, the mean of the nose bridge
  points 27–30; ``d_i = (p_i − c) · u`` is the signed horizontal distance of point ``i`` from it;
* for every mirrored pair ``(l, r)`` of :data:`MIRROR_PAIRS` (jaw 0↔16 …, brows 17↔26 …, nose 31↔35,
  32↔34, eyes 36↔45 …, mouth 48↔54 …) a frontal face has ``d_l = −d_r``; points on the axis
  (:data:`AXIS_POINTS`: chin 8, nose 33, mouth 51, 57, 62, 66) count as pairs with themselves
  (``d = 0``);
* ``yaw_asymmetry = mean over the pairs of |d_l + d_r| / iod``.

It is invariant to translation, scale and in-plane rotation, and 0 for a perfectly symmetric face. Under
a yaw ``θ`` the nose bridge (which sticks out) moves across the face while the projected width shrinks,
so for an orthographic view the score grows like ``|tan θ|``; it also reacts to asymmetric expressions,
which make a reference less useful too.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

__all__ = ["MIRROR_PAIRS", "AXIS_POINTS", "yaw_asymmetry", "most_frontal"]

_JAW = tuple((i, 16 - i) for i in range(8))
_BROWS = tuple((17 + i, 26 - i) for i in range(5))
_NOSTRILS = ((31, 35), (32, 34))
_EYES = ((36, 45), (37, 44), (38, 43), (39, 42), (40, 47), (41, 46))
_MOUTH = ((48, 54), (49, 53), (50, 52), (59, 55), (58, 56), (60, 64), (61, 63), (67, 65))
#: Left/right landmark pairs of the 68-point layout (image-left point first).
MIRROR_PAIRS: tuple[tuple[int, int], ...] = (*_JAW, *_BROWS, *_NOSTRILS, *_EYES, *_MOUTH)
#: Landmarks on the face's vertical axis besides the nose bridge.
AXIS_POINTS: tuple[int, ...] = (8, 33, 51, 57, 62, 66)
_BRIDGE = slice(27, 31)
_LEFT, _RIGHT = zip(*MIRROR_PAIRS, *((i, i) for i in AXIS_POINTS), strict=True)


def _check(landmarks: np.ndarray, what: str) -> np.ndarray:
    arr = np.asarray(landmarks, dtype=np.float64)
    if arr.shape[-2:] != (68, 2) or arr.ndim not in (2, 3):
        raise ValueError(f"{what} must be (68, 2) (x, y) landmarks or a batch (B, 68, 2), got {arr.shape}")
    if not np.isfinite(arr).all():
        raise ValueError(f"{what} contain non-finite values")
    return arr


def yaw_asymmetry(landmarks: np.ndarray) -> float | np.ndarray:
    """The asymmetry score of the module docstring (≥ 0; 0 is frontal); ``inf`` if the eyes coincide.

    ``(68, 2)`` → float; ``(B, 68, 2)`` → ``(B,)`` float64.
    """
    pts = _check(landmarks, "landmarks")
    batch = pts.reshape(-1, 68, 2)
    eyes = batch[:, 42:48].mean(axis=1) - batch[:, 36:42].mean(axis=1)
    iod = np.linalg.norm(eyes, axis=-1)
    with np.errstate(divide="ignore", invalid="ignore"):
        u = eyes / iod[:, None]
        d = np.einsum("bnk,bk->bn", batch - batch[:, _BRIDGE].mean(axis=1, keepdims=True), u)
        score = np.abs(d[:, list(_LEFT)] + d[:, list(_RIGHT)]).mean(axis=1) / iod
    score = np.where(iod > 0, score, np.inf)
    return float(score[0]) if pts.ndim == 2 else score


def most_frontal(pool: Sequence[np.ndarray]) -> int:
    """Index of the pool's most frontal landmark set (smallest :func:`yaw_asymmetry`; the first on a tie)."""
    if len(pool) == 0:
        raise ValueError("the landmark pool is empty")
    sets = []
    for k, landmarks in enumerate(pool):
        arr = _check(landmarks, f"pool[{k}]")
        if arr.ndim != 2:
            raise ValueError(f"pool[{k}] must be one (68, 2) landmark set, got {arr.shape}")
        sets.append(arr)
    return int(np.argmin(yaw_asymmetry(np.stack(sets))))
