"""The steps of the degradation model, each a small pure function on numpy images.

Conventions shared by every step:

* images are RGB ``(H, W, 3)``, either ``uint8`` or floating point, on the 0–255 scale;
* the continuous steps (:func:`gaussian_blur`, :func:`downsample`, :func:`add_noise`, :func:`upsample_to`)
  compute in ``float32`` and return ``float32`` on the 0–255 scale, **not clipped** (bicubic overshoot and
  noise may leave [0, 255]); :func:`to_uint8` clips and rounds;
* :func:`jpeg` quantises to ``uint8`` first (JPEG stores 8-bit samples) and returns ``uint8``.
"""

from __future__ import annotations

import math

import cv2
import numpy as np
from PIL import Image

__all__ = [
    "blur_kernel_size",
    "gaussian_blur",
    "resized_shape",
    "downsample",
    "add_noise",
    "to_uint8",
    "jpeg",
    "upsample_to",
]


def _check_image(image: np.ndarray) -> np.ndarray:
    """Validate an RGB ``(H, W, 3)`` image and return it as contiguous ``float32``."""
    if not isinstance(image, np.ndarray) or image.ndim != 3 or image.shape[2] != 3:
        shape = getattr(image, "shape", None)
        raise ValueError(f"expected an RGB image of shape (H, W, 3), got {shape}")
    if not (image.dtype == np.uint8 or np.issubdtype(image.dtype, np.floating)):
        raise ValueError(f"expected uint8 or floating-point image, got dtype {image.dtype}")
    if min(image.shape[:2]) < 1:
        raise ValueError(f"empty image of shape {image.shape}")
    return np.ascontiguousarray(image, dtype=np.float32)


def blur_kernel_size(sigma: float) -> int:
    """Side of the square Gaussian kernel used for ``sigma``: ``2 * ceil(3 * sigma) + 1`` (odd, ±3σ)."""
    if sigma < 0:
        raise ValueError(f"blur sigma must be >= 0, got {sigma}")
    return 2 * math.ceil(3.0 * sigma) + 1


def gaussian_blur(image: np.ndarray, sigma: float) -> np.ndarray:
    """Convolve with an isotropic Gaussian kernel ``k_sigma`` (the ``I ⊗ k_ρ`` of eq. 19).

    The kernel is ``blur_kernel_size(sigma)`` pixels square (``2·ceil(3σ)+1``), normalised to sum 1,
    applied separably by OpenCV with reflect-101 borders (``dcb|abcd|cba``), so a constant image stays
    constant. ``sigma == 0`` returns the image unchanged (as ``float32``).

    Args:
        image: RGB ``(H, W, 3)`` uint8 or float, 0–255.
        sigma: kernel standard deviation in pixels, ``>= 0``.

    Returns:
        ``float32`` ``(H, W, 3)``, 0–255.
    """
    x = _check_image(image)
    size = blur_kernel_size(sigma)
    if sigma == 0:
        return x.copy()
    return cv2.GaussianBlur(x, (size, size), sigmaX=sigma, sigmaY=sigma, borderType=cv2.BORDER_REFLECT_101)


def resized_shape(height: int, width: int, scale: float) -> tuple[int, int]:
    """Low-resolution ``(h, w)`` for a down-scaling factor: ``floor(side / scale + 0.5)``, at least 1.

    For a 512 side: ×4 → 128, ×8 → 64, ×10 → 51 (no grid value in 1:0.1:10 lands on a half).
    """
    if not scale > 0:
        raise ValueError(f"scale must be > 0, got {scale}")
    return max(1, math.floor(height / scale + 0.5)), max(1, math.floor(width / scale + 0.5))


def _bicubic_resize(x: np.ndarray, height: int, width: int) -> np.ndarray:
    """Bicubic resize of a ``float32`` ``(H, W, 3)`` array with Pillow, channel by channel in mode ``F``."""
    channels = [
        np.asarray(Image.fromarray(x[:, :, c]).resize((width, height), Image.Resampling.BICUBIC))
        for c in range(3)
    ]
    return np.stack(channels, axis=2).astype(np.float32, copy=False)


def downsample(image: np.ndarray, scale: float) -> np.ndarray:
    """Bicubic down-scaling by ``scale`` (the ``↓r`` of eq. 19).

    Convention: Pillow's ``BICUBIC`` filter (cubic kernel a = -0.5, as MATLAB ``imresize``) on float32, which
    widens the kernel by the scale factor when shrinking (anti-aliased, like ``imresize``). The output side is
    :func:`resized_shape` (``round(512 / r)`` for a 512 image, half rounded up).

    Args:
        image: RGB ``(H, W, 3)`` uint8 or float, 0–255.
        scale: factor ``r > 0``; ``r == 1`` returns the image unchanged (as ``float32``).

    Returns:
        ``float32`` ``(round(H / r), round(W / r), 3)``, 0–255, not clipped.
    """
    x = _check_image(image)
    h, w = resized_shape(x.shape[0], x.shape[1], scale)
    if (h, w) == x.shape[:2]:
        return x.copy()
    return _bicubic_resize(x, h, w)


def add_noise(image: np.ndarray, sigma: float, rng: np.random.Generator) -> np.ndarray:
    """Add white Gaussian noise ``n_σ`` (0–255 scale), independent per pixel and channel (colour noise).

    ``sigma == 0`` returns the image unchanged (as ``float32``) and draws nothing from ``rng``.

    Args:
        image: RGB ``(H, W, 3)`` uint8 or float, 0–255.
        sigma: noise standard deviation on the 0–255 scale, ``>= 0``.
        rng: the generator the noise is drawn from (``standard_normal``, float32).

    Returns:
        ``float32`` ``(H, W, 3)``, not clipped.
    """
    if sigma < 0:
        raise ValueError(f"noise sigma must be >= 0, got {sigma}")
    x = _check_image(image)
    if sigma == 0:
        return x.copy()
    noise = rng.standard_normal(x.shape, dtype=np.float32)
    return x + np.float32(sigma) * noise


def to_uint8(image: np.ndarray) -> np.ndarray:
    """Clip to [0, 255] and round half to even into ``uint8`` ``(H, W, 3)``."""
    x = _check_image(image)
    return np.clip(np.rint(x), 0, 255).astype(np.uint8)


def jpeg(image: np.ndarray, quality: int) -> np.ndarray:
    """JPEG-compress and decode (the ``(·)_JPEG_q`` of eq. 19).

    Encoder: OpenCV ``imencode`` (the libjpeg-turbo bundled with opencv-python-headless, baseline, 4:2:0
    chroma subsampling, its default for colour images). RGB in, RGB out (converted to BGR only around the
    OpenCV call). Float input is first quantised with :func:`to_uint8`.

    Args:
        image: RGB ``(H, W, 3)`` uint8 or float, 0–255.
        quality: JPEG quality, an integer in 1..100.

    Returns:
        ``uint8`` ``(H, W, 3)`` RGB.
    """
    if isinstance(quality, bool) or not isinstance(quality, (int, np.integer)) or not 1 <= quality <= 100:
        raise ValueError(f"JPEG quality must be an integer in 1..100, got {quality!r}")
    pixels = image if image.dtype == np.uint8 and image.ndim == 3 else to_uint8(image)
    _check_image(pixels)
    bgr = np.ascontiguousarray(pixels[:, :, ::-1])
    ok, encoded = cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
    if not ok:
        raise RuntimeError("OpenCV failed to JPEG-encode the image")
    decoded = cv2.imdecode(encoded, cv2.IMREAD_COLOR)
    return np.ascontiguousarray(decoded[:, :, ::-1])


def upsample_to(image: np.ndarray, size: int = 512) -> np.ndarray:
    """Bicubic up-scaling of an LQ image back to ``size × size`` (the network input).

    Same filter as :func:`downsample` (Pillow ``BICUBIC`` on float32).

    Args:
        image: RGB ``(h, w, 3)`` uint8 or float, 0–255.
        size: output side in pixels.

    Returns:
        ``float32`` ``(size, size, 3)``, 0–255, clipped to [0, 255] (bicubic overshoot removed).
    """
    if size < 1:
        raise ValueError(f"size must be >= 1, got {size}")
    x = _check_image(image)
    if x.shape[:2] != (size, size):
        x = _bicubic_resize(x, size, size)
    return np.clip(x, 0.0, 255.0)
