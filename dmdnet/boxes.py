"""Facial-component boxes from 68 landmarks, as the official DMDNet release computes them.

Boxes are in pixels of the aligned 512×512 face; rows are left eye (points 36–41, the eye on the image's
left), right eye (42–47), nose (29–35; computed but unused by the network) and mouth (48–67); columns are
``x1, y1, x2, y2``. All arithmetic is float64; the result is truncated toward zero (a C-style cast).
"""

from __future__ import annotations

import numpy as np

__all__ = ["COMPONENT_ROWS", "component_boxes", "component_boxes_batch"]

#: Box rows the network uses, in paste order: left eye, right eye, mouth.
COMPONENT_ROWS: dict[str, int] = {"le": 0, "re": 1, "mo": 3}

_CLIP_LOW, _CLIP_HIGH = 8.0, 504.0
_MOUTH_CAP = 510.0


def _eye_box(pts: np.ndarray, eye: slice, brow: slice) -> list[float]:
    c = pts[eye].mean(axis=0)
    top = min(pts[brow, 1].min(), pts[eye, 1].min())
    h1 = 1.3 * (c[1] - top)
    h2 = h1 / 1.9
    w = h1 + h2
    return [c[0] - w / 2 + 1, c[1] - h1 + 1, c[0] + w / 2, c[1] + h2]


def component_boxes(landmarks: np.ndarray) -> np.ndarray:
    """Four component boxes from one face's landmarks.

    Args:
        landmarks: ``(68, 2)`` array of ``(x, y)`` in iBUG order, pixels of the 512×512 aligned face.

    Returns:
        ``(4, 4)`` int64 array, rows left eye / right eye / nose / mouth, columns ``x1, y1, x2, y2``.
    """
    pts = np.asarray(landmarks, dtype=np.float64)
    if pts.shape != (68, 2):
        raise ValueError(f"landmarks must have shape (68, 2), got {pts.shape}")
    if not np.all(np.isfinite(pts)):
        raise ValueError("landmarks contain NaN or infinite values")
    pts = np.clip(pts, _CLIP_LOW, _CLIP_HIGH)

    left_eye = _eye_box(pts, slice(36, 42), slice(17, 22))
    right_eye = _eye_box(pts, slice(42, 48), slice(22, 27))

    nose_c = pts[29:36].mean(axis=0)
    a = 1.25 * max(nose_c[0] - pts[31, 0], pts[35, 0] - nose_c[0])
    b = 1.1 * (pts[33, 1] - nose_c[1])
    nose = [nose_c[0] - a + 1, nose_c[1] - (2 * a - b) + 1, nose_c[0] + a, nose_c[1] + b]

    mouth_pts = pts[48:68]
    mc = mouth_pts.mean(axis=0)
    extent = max(np.ptp(mouth_pts[:, 0]), np.ptp(mouth_pts[:, 1]))
    r = 1.1 * max(extent / 2, 16.0)
    mouth = [mc[0] - r + 1, mc[1] - r + 1, min(mc[0] + r, _MOUTH_CAP), min(mc[1] + r, _MOUTH_CAP)]

    boxes = np.array([left_eye, right_eye, nose, mouth], dtype=np.float64)
    return np.trunc(boxes).astype(np.int64)


def component_boxes_batch(landmarks: np.ndarray) -> np.ndarray:
    """``(B, 68, 2)`` landmarks → ``(B, 4, 4)`` int64 boxes (see :func:`component_boxes`)."""
    lm = np.asarray(landmarks, dtype=np.float64)
    if lm.ndim != 3:
        raise ValueError(f"landmarks must have shape (B, 68, 2), got {lm.shape}")
    return np.stack([component_boxes(x) for x in lm]) if len(lm) else np.zeros((0, 4, 4), np.int64)
