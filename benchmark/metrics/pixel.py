"""PSNR and SSIM as pure functions, with BasicSR's conventions as defaults.

Inputs are RGB ``(H, W, 3)``, ``uint8`` or float on the 0–255 scale, and are computed in ``float64``.
Defaults: all three channels, no border crop. ``y_channel=True`` uses the BT.601 luma of BasicSR,
``Y = 16 + (65.481 R + 128.553 G + 24.966 B) / 255`` on 0–255 (not rounded).
"""

from __future__ import annotations

import math

import cv2
import numpy as np

__all__ = ["rgb_to_y", "psnr", "ssim", "SSIM_WINDOW", "SSIM_SIGMA"]

SSIM_WINDOW = 11
SSIM_SIGMA = 1.5
_DATA_RANGE = 255.0


def _check_pair(img: np.ndarray, ref: np.ndarray) -> None:
    for name, x in (("img", img), ("ref", ref)):
        if not isinstance(x, np.ndarray) or x.ndim != 3 or x.shape[2] != 3:
            raise ValueError(f"{name}: expected RGB (H, W, 3), got shape {getattr(x, 'shape', None)}")
        if not (x.dtype == np.uint8 or np.issubdtype(x.dtype, np.floating)):
            raise ValueError(f"{name}: expected uint8 or float on 0-255, got dtype {x.dtype}")
    if img.shape != ref.shape:
        raise ValueError(f"img and ref shapes differ: {img.shape} vs {ref.shape}")


def rgb_to_y(image: np.ndarray) -> np.ndarray:
    """BT.601 luma of an RGB ``(H, W, 3)`` image on 0–255 → ``float64`` ``(H, W)`` in [16, 235]."""
    x = np.asarray(image, dtype=np.float64)
    return 16.0 + (65.481 * x[..., 0] + 128.553 * x[..., 1] + 24.966 * x[..., 2]) / 255.0


def _prepare(img: np.ndarray, ref: np.ndarray, crop_border: int, y_channel: bool) -> tuple[np.ndarray, ...]:
    """Validate, crop and convert a pair to ``float64`` ``(H, W, C)`` with C = 3 (RGB) or 1 (Y)."""
    _check_pair(img, ref)
    if crop_border < 0:
        raise ValueError(f"crop_border must be >= 0, got {crop_border}")
    if 2 * crop_border >= min(img.shape[:2]):
        raise ValueError(f"crop_border {crop_border} leaves nothing of a {img.shape[:2]} image")
    out = []
    for x in (img, ref):
        x = np.asarray(x, dtype=np.float64)
        if crop_border:
            x = x[crop_border:-crop_border, crop_border:-crop_border]
        out.append(rgb_to_y(x)[..., None] if y_channel else x)
    return tuple(out)


def psnr(img: np.ndarray, ref: np.ndarray, *, crop_border: int = 0, y_channel: bool = False) -> float:
    """Peak signal-to-noise ratio in dB, peak 255: ``10 log10(255² / MSE)`` over all pixels and channels.

    Args:
        img, ref: RGB ``(H, W, 3)``, uint8 or float on 0–255, same shape.
        crop_border: pixels removed on each side before comparing.
        y_channel: compare the BT.601 luma only.

    Returns:
        PSNR (``inf`` for identical images).
    """
    a, b = _prepare(img, ref, crop_border, y_channel)
    mse = float(np.mean((a - b) ** 2))
    if mse == 0.0:
        return math.inf
    return 10.0 * math.log10(_DATA_RANGE**2 / mse)


def _gaussian_window(size: int = SSIM_WINDOW, sigma: float = SSIM_SIGMA) -> np.ndarray:
    x = np.arange(size, dtype=np.float64) - (size - 1) / 2
    w = np.exp(-(x**2) / (2 * sigma**2))
    return w / w.sum()


def _filter_valid(x: np.ndarray, window: np.ndarray) -> np.ndarray:
    """Separable 2-D filtering of ``float64`` ``(H, W)`` keeping only the 'valid' part (no border effects).

    OpenCV ``sepFilter2D`` in float64; the border mode does not matter since the border is trimmed.
    """
    pad = (len(window) - 1) // 2
    y = cv2.sepFilter2D(x, cv2.CV_64F, window, window, borderType=cv2.BORDER_REFLECT)
    return y[pad:-pad, pad:-pad]


def _ssim_channel(a: np.ndarray, b: np.ndarray, window: np.ndarray) -> float:
    c1 = (0.01 * _DATA_RANGE) ** 2
    c2 = (0.03 * _DATA_RANGE) ** 2
    mu_a, mu_b = _filter_valid(a, window), _filter_valid(b, window)
    var_a = _filter_valid(a * a, window) - mu_a**2
    var_b = _filter_valid(b * b, window) - mu_b**2
    cov = _filter_valid(a * b, window) - mu_a * mu_b
    num = (2 * mu_a * mu_b + c1) * (2 * cov + c2)
    den = (mu_a**2 + mu_b**2 + c1) * (var_a + var_b + c2)
    return float(np.mean(num / den))


def ssim(img: np.ndarray, ref: np.ndarray, *, crop_border: int = 0, y_channel: bool = False) -> float:
    """Structural similarity (Wang et al. 2004) as BasicSR computes it.

    Gaussian window 11×11, σ = 1.5; C1 = (0.01·255)², C2 = (0.03·255)²; population (biased) local
    variances; the SSIM map is kept only where the window lies inside the image ('valid', i.e. 5 pixels
    trimmed on each side) and averaged; the result is the mean over channels (or the Y channel alone).

    Args:
        img, ref: RGB ``(H, W, 3)``, uint8 or float on 0–255, same shape, at least 11×11 after cropping.
        crop_border: pixels removed on each side before comparing.
        y_channel: compare the BT.601 luma only.

    Returns:
        SSIM in [-1, 1] (1 for identical images).
    """
    a, b = _prepare(img, ref, crop_border, y_channel)
    if min(a.shape[:2]) < SSIM_WINDOW:
        raise ValueError(f"SSIM needs at least {SSIM_WINDOW}x{SSIM_WINDOW} pixels, got {a.shape[:2]}")
    window = _gaussian_window()
    channels = [(np.ascontiguousarray(a[..., c]), np.ascontiguousarray(b[..., c])) for c in range(a.shape[2])]
    return float(np.mean([_ssim_channel(x, y, window) for x, y in channels]))
