"""The three face-analysis interfaces every backend implements.

Images are RGB ``uint8`` ``(H, W, 3)`` numpy arrays. Coordinates are pixels ``(x, y)`` where integer
values are pixel centres (``(0, 0)`` is the centre of the top-left pixel), as dlib, OpenCV's warps and the
official DMDNet code use them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import numpy as np

__all__ = ["FaceBox", "Detector", "Landmarker", "IdentityEmbedder", "shrink"]


@dataclass(frozen=True)
class FaceBox:
    """An axis-aligned face box in pixels with a detector confidence (higher is more confident)."""

    left: float
    top: float
    right: float
    bottom: float
    score: float = 1.0

    @property
    def width(self) -> float:
        return self.right - self.left

    @property
    def height(self) -> float:
        return self.bottom - self.top

    @property
    def size(self) -> float:
        """The shorter side: what ``min_face`` thresholds compare against."""
        return min(self.width, self.height)

    @property
    def area(self) -> float:
        return max(self.width, 0.0) * max(self.height, 0.0)

    def scaled(self, sx: float, sy: float) -> FaceBox:
        """The box with x multiplied by ``sx`` and y by ``sy`` (back from a resized image)."""
        return FaceBox(self.left * sx, self.top * sy, self.right * sx, self.bottom * sy, self.score)


def shrink(image: np.ndarray, factor: float) -> tuple[np.ndarray, float, float]:
    """``image`` resized by ``factor`` < 1 (area interpolation) and the ``(sx, sy)`` that map its pixels back.

    ``factor >= 1`` returns the image itself with ``(1.0, 1.0)``.
    """
    if factor >= 1.0:
        return image, 1.0, 1.0
    import cv2

    h, w = image.shape[:2]
    size = (max(1, round(w * factor)), max(1, round(h * factor)))
    small = cv2.resize(image, size, interpolation=cv2.INTER_AREA)
    return small, w / size[0], h / size[1]


@runtime_checkable
class Detector(Protocol):
    name: str

    def detect(self, image: np.ndarray) -> list[FaceBox]:
        """All faces in ``image``, largest first.

        A detector may also tell the smallest face box it finds as ``min_box`` (pixels); curation then
        detects on a downscaled copy when the faces it wants are much larger than that.
        """
        ...


@runtime_checkable
class Landmarker(Protocol):
    name: str

    def landmarks(self, image: np.ndarray, box: FaceBox) -> np.ndarray:
        """68 points in iBUG order for the face in ``box``: float64 ``(68, 2)`` of ``(x, y)``."""
        ...


@runtime_checkable
class IdentityEmbedder(Protocol):
    name: str  # e.g. "dlib" or "arcface": labels identity metrics as Id(<name>)

    def embed(self, image: np.ndarray, landmarks: np.ndarray) -> np.ndarray:
        """L2-normalised identity embedding ``(D,)`` float32 of the face given by its 68 landmarks."""
        ...
