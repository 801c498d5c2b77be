"""Image-quality measures used by curation: sharpness and near-duplicate hashing.

All functions take RGB ``uint8`` ``(H, W, 3)`` arrays and are pure.
"""

from __future__ import annotations

import cv2
import numpy as np

from faces.types import FaceBox

__all__ = ["laplacian_variance", "face_sharpness", "difference_hash", "hamming_distance"]


def laplacian_variance(gray: np.ndarray) -> float:
    """Variance of the 3×3 Laplacian of a grayscale image (float64): higher means sharper."""
    if gray.ndim != 2:
        raise ValueError(f"laplacian_variance expects a 2-D grayscale image, got shape {gray.shape}")
    lap = cv2.Laplacian(gray.astype(np.float64), cv2.CV_64F, ksize=1)
    return float(lap.var())


def _to_gray(image: np.ndarray) -> np.ndarray:
    return cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)


def face_sharpness(image: np.ndarray, box: FaceBox, *, size: int = 256) -> float:
    """Laplacian variance of the face box resized to ``size × size`` (area for shrink, cubic to enlarge).

    Measuring at a fixed size makes scores comparable between small and large faces: a small face blown up
    to ``size`` scores low, as it should for a dataset of high-resolution references.
    """
    h, w = image.shape[:2]
    x0, y0 = max(int(np.floor(box.left)), 0), max(int(np.floor(box.top)), 0)
    x1, y1 = min(int(np.ceil(box.right)), w), min(int(np.ceil(box.bottom)), h)
    if x1 - x0 < 2 or y1 - y0 < 2:
        return 0.0
    crop = _to_gray(image[y0:y1, x0:x1])
    interp = cv2.INTER_AREA if crop.shape[0] >= size else cv2.INTER_CUBIC
    crop = cv2.resize(crop, (size, size), interpolation=interp)
    return laplacian_variance(crop)


def difference_hash(image: np.ndarray, *, bits: int = 16) -> np.ndarray:
    """Difference hash: ``bits × bits`` booleans, True where a pixel is brighter than its right neighbour.

    Robust to re-encoding and resizing, so two copies of one photo hash within a few bits.
    """
    gray = cv2.resize(_to_gray(image), (bits + 1, bits), interpolation=cv2.INTER_AREA).astype(np.int16)
    return (gray[:, 1:] > gray[:, :-1]).reshape(-1)


def hamming_distance(a: np.ndarray, b: np.ndarray) -> int:
    """Number of differing bits of two equally long boolean hashes."""
    if a.shape != b.shape:
        raise ValueError(f"hash shapes differ: {a.shape} vs {b.shape}")
    return int(np.count_nonzero(a != b))
