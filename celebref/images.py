"""Image I/O at the edge: everything inside the toolkit is RGB ``uint8`` ``(H, W, 3)`` numpy."""

from __future__ import annotations

import io
import warnings
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

from celebref.atomic import atomic_path

__all__ = ["ImageDecodeError", "decode_image", "read_image", "write_png", "MAX_PIXELS"]

# Decompression-bomb guard: refuse anything above ~ 12k x 12k.
MAX_PIXELS = 150_000_000


class ImageDecodeError(ValueError):
    """Bytes or a file that do not decode to a usable RGB image."""


def decode_image(data: bytes, *, max_pixels: int = MAX_PIXELS) -> np.ndarray:
    """Decode encoded bytes to RGB uint8 ``(H, W, 3)``, honouring EXIF orientation.

    Raises :class:`ImageDecodeError` with the reason (truncated, not an image, too many pixels).
    """
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data)) as im:
                w, h = im.size
                if w * h > max_pixels:
                    raise ImageDecodeError(f"image too large: {w}x{h} exceeds {max_pixels} pixels")
                im.load()
                im = ImageOps.exif_transpose(im)
                rgb = im.convert("RGB")
    except ImageDecodeError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise ImageDecodeError(f"decompression bomb: {exc}") from exc
    except Exception as exc:  # PIL raises many types for bad data
        raise ImageDecodeError(f"cannot decode image: {type(exc).__name__}: {exc}") from exc
    arr = np.asarray(rgb, dtype=np.uint8)
    if arr.ndim != 3 or arr.shape[2] != 3 or min(arr.shape[:2]) < 1:
        raise ImageDecodeError(f"unexpected decoded shape {arr.shape}")
    return np.ascontiguousarray(arr)


def read_image(path: str | Path) -> np.ndarray:
    """Read a file as RGB uint8 ``(H, W, 3)``."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ImageDecodeError(f"{path}: {exc}") from exc
    try:
        return decode_image(data)
    except ImageDecodeError as exc:
        raise ImageDecodeError(f"{path}: {exc}") from exc


def write_png(path: str | Path, image: np.ndarray) -> None:
    """Write RGB uint8 ``(H, W, 3)`` as PNG, atomically."""
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"write_png expects RGB uint8 (H, W, 3), got {image.dtype} {image.shape}")
    with atomic_path(path) as tmp:
        Image.fromarray(image).save(tmp, format="PNG")
