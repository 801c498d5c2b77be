"""FFHQ-style face alignment from 68 landmarks, and pasting a processed crop back into the photo.

The rule (the one the official DMDNet fixtures were made with):

- eye centres: mean of points 36–41 (image-left eye) and 42–47; mouth corners: points 48 and 54;
- ``e2e`` = right eye − left eye; ``e2m`` = mouth-corner midpoint − eye midpoint;
- ``x = e2e − rot90(e2m)`` normalised and scaled by ``max(2·|e2e|, 1.8·|e2m|)``; ``y = rot90(x)``;
- centre ``c = eye midpoint + 0.1·e2m``; quad = ``c − x − y`` (top-left), ``c − x + y`` (bottom-left),
  ``c + x + y`` (bottom-right), ``c + x − y`` (top-right);
- FFHQ's integer pre-shrink: ``shrink = floor(quad size / output size / 2)`` with quad size ``2·|x|``;
  when it is above 1 the photo is first reduced by that factor (area interpolation);
- an affine map sends the quad's top-left, bottom-left and bottom-right corners to ``(0, 0)``,
  ``(0, S)`` and ``(S, S)``; OpenCV bilinear warp with a reflected border (``BORDER_REFLECT``).

Coordinates are OpenCV's: ``(x, y)`` pixels where integer values are pixel centres (as dlib returns
landmarks). ``matrix`` always maps original-photo coordinates to aligned-image coordinates, the
pre-shrink included.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

__all__ = ["AlignedFace", "align_face", "alignment_quad", "transform_points", "invert_affine", "paste_back"]


@dataclass(frozen=True)
class AlignedFace:
    """An aligned face crop.

    Attributes:
        image: RGB uint8 ``(S, S, 3)``.
        matrix: float64 ``(2, 3)`` affine map from original-photo ``(x, y)`` to aligned ``(x, y)``.
        quad: float64 ``(4, 2)`` quad corners in the original photo: top-left, bottom-left,
            bottom-right, top-right.
    """

    image: np.ndarray
    matrix: np.ndarray
    quad: np.ndarray

    @property
    def size(self) -> int:
        return int(self.image.shape[0])


def _check_landmarks(landmarks: np.ndarray) -> np.ndarray:
    pts = np.asarray(landmarks, dtype=np.float64)
    if pts.shape != (68, 2) or not np.all(np.isfinite(pts)):
        raise ValueError(f"expected finite (68, 2) landmarks, got shape {pts.shape}")
    return pts


def alignment_quad(landmarks: np.ndarray) -> np.ndarray:
    """The FFHQ crop quad for 68 landmarks: float64 ``(4, 2)``, order TL, BL, BR, TR (see module doc)."""
    pts = _check_landmarks(landmarks)
    eye_left = pts[36:42].mean(axis=0)
    eye_right = pts[42:48].mean(axis=0)
    eye_mid = (eye_left + eye_right) / 2.0
    eye_to_eye = eye_right - eye_left
    mouth_mid = (pts[48] + pts[54]) / 2.0
    eye_to_mouth = mouth_mid - eye_mid

    def rot90(v: np.ndarray) -> np.ndarray:  # (vx, vy) -> (-vy, vx)
        return np.array([-v[1], v[0]])

    x = eye_to_eye - rot90(eye_to_mouth)
    norm = math.hypot(x[0], x[1])
    if norm == 0.0:
        raise ValueError("degenerate landmarks: eyes and mouth give no orientation")
    x = x / norm * max(2.0 * math.hypot(*eye_to_eye), 1.8 * math.hypot(*eye_to_mouth))
    y = rot90(x)
    c = eye_mid + 0.1 * eye_to_mouth
    return np.stack([c - x - y, c - x + y, c + x + y, c + x - y]).astype(np.float64)


def _affine_from_3(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """Exact float64 affine ``(2, 3)`` with ``A @ [src_i, 1] = dst_i`` for 3 point pairs."""
    a = np.hstack([src, np.ones((3, 1))])  # (3, 3)
    return np.linalg.solve(a, dst).T  # (2, 3)


def _compose(outer: np.ndarray, inner: np.ndarray) -> np.ndarray:
    """``outer ∘ inner`` for two ``(2, 3)`` affine maps."""
    o = np.vstack([outer, [0.0, 0.0, 1.0]])
    i = np.vstack([inner, [0.0, 0.0, 1.0]])
    return (o @ i)[:2]


def align_face(
    image: np.ndarray, landmarks: np.ndarray, *, output_size: int = 512, preshrink: bool = True
) -> AlignedFace:
    """Align the face given by 68 landmarks to an ``output_size`` square, FFHQ-style.

    Args:
        image: RGB uint8 ``(H, W, 3)``.
        landmarks: float ``(68, 2)`` ``(x, y)`` pixel coordinates in ``image`` (iBUG order).
        output_size: side of the aligned square (512 for CelebRef-HQ).
        preshrink: apply FFHQ's integer pre-shrink for faces much larger than the output.

    Returns:
        :class:`AlignedFace` with the RGB uint8 ``(S, S, 3)`` crop and the source→aligned matrix.
    """
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"expected an RGB uint8 (H, W, 3) image, got {image.dtype} {image.shape}")
    if output_size < 8:
        raise ValueError(f"output_size must be >= 8, got {output_size}")
    quad = alignment_quad(landmarks)
    qsize = float(np.hypot(*(quad[2] - quad[1])))  # = 2·|x|
    src = image
    pre = np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])
    shrink = int(math.floor(qsize / output_size * 0.5))
    if preshrink and shrink > 1:
        h, w = image.shape[:2]
        size = (max(1, round(w / shrink)), max(1, round(h / shrink)))
        src = cv2.resize(image, size, interpolation=cv2.INTER_AREA)
        sx, sy = size[0] / w, size[1] / h
        # Pixel-centre convention: x' = (x + 0.5)·sx − 0.5.
        pre = np.array([[sx, 0.0, 0.5 * sx - 0.5], [0.0, sy, 0.5 * sy - 0.5]])
    quad_src = transform_points(quad, pre)
    s = float(output_size)
    dst = np.array([[0.0, 0.0], [0.0, s], [s, s]])
    warp = _affine_from_3(quad_src[:3], dst)
    aligned = cv2.warpAffine(
        np.ascontiguousarray(src),
        warp,
        (output_size, output_size),
        flags=cv2.INTER_LINEAR,
        borderMode=cv2.BORDER_REFLECT,
    )
    return AlignedFace(image=aligned, matrix=_compose(warp, pre), quad=quad)


def transform_points(points: np.ndarray, matrix: np.ndarray) -> np.ndarray:
    """Apply a ``(2, 3)`` affine ``matrix`` to float ``(N, 2)`` points; returns float64 ``(N, 2)``."""
    pts = np.asarray(points, dtype=np.float64)
    m = np.asarray(matrix, dtype=np.float64)
    if pts.ndim != 2 or pts.shape[1] != 2:
        raise ValueError(f"expected (N, 2) points, got {pts.shape}")
    if m.shape != (2, 3):
        raise ValueError(f"expected a (2, 3) affine matrix, got {m.shape}")
    return pts @ m[:, :2].T + m[:, 2]


def invert_affine(matrix: np.ndarray) -> np.ndarray:
    """Inverse of a ``(2, 3)`` affine map (float64)."""
    m = np.vstack([np.asarray(matrix, dtype=np.float64), [0.0, 0.0, 1.0]])
    return np.linalg.inv(m)[:2]


def paste_back(
    original: np.ndarray, aligned: np.ndarray, matrix: np.ndarray, *, feather: float = 0.05
) -> np.ndarray:
    """Warp an aligned (e.g. restored) crop back into the original photo with a soft-edged mask.

    Args:
        original: RGB uint8 ``(H, W, 3)`` photo the crop was taken from.
        aligned: RGB uint8 ``(S, S, 3)`` crop in the aligned frame; if its size differs from the one
            ``matrix`` was made for, give ``matrix`` for this size (scale its rows).
        matrix: float ``(2, 3)`` source→aligned map, as in :attr:`AlignedFace.matrix`.
        feather: width of the mask's soft border as a fraction of ``S`` (0 = hard edge).

    Returns:
        RGB uint8 ``(H, W, 3)``: ``mask·crop + (1 − mask)·original`` in the original frame.
    """
    for name, arr in (("original", original), ("aligned", aligned)):
        if arr.dtype != np.uint8 or arr.ndim != 3 or arr.shape[2] != 3:
            raise ValueError(f"{name} must be RGB uint8 (H, W, 3), got {arr.dtype} {arr.shape}")
    if aligned.shape[0] != aligned.shape[1]:
        raise ValueError(f"aligned crop must be square, got {aligned.shape[:2]}")
    if not 0.0 <= feather <= 0.5:
        raise ValueError(f"feather must be in [0, 0.5], got {feather}")
    size = aligned.shape[0]
    h, w = original.shape[:2]
    m = np.asarray(matrix, dtype=np.float64)
    if m.shape != (2, 3):
        raise ValueError(f"expected a (2, 3) affine matrix, got {m.shape}")

    # Soft mask in the aligned frame: 1 inside, ramping to 0 over `feather·S` pixels at the border.
    idx = np.arange(size, dtype=np.float32)
    edge = np.minimum(idx + 0.5, size - 0.5 - idx)  # distance from the nearest border, in pixels
    ramp_px = feather * size
    ramp = np.clip(edge / ramp_px, 0.0, 1.0) if ramp_px > 0 else np.ones_like(edge)
    ramp = ramp * ramp * (3.0 - 2.0 * ramp)  # smoothstep
    mask = np.minimum(ramp[:, None], ramp[None, :]).astype(np.float32)

    flags = cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP
    back = cv2.warpAffine(aligned, m, (w, h), flags=flags, borderMode=cv2.BORDER_REPLICATE)
    alpha = cv2.warpAffine(mask, m, (w, h), flags=flags, borderMode=cv2.BORDER_CONSTANT, borderValue=0.0)
    alpha = alpha[..., None]
    out = alpha * back.astype(np.float32) + (1.0 - alpha) * original.astype(np.float32)
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)
