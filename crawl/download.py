"""One candidate → one :class:`Attempt`: get the bytes, hash them, check they decode as a usable image.

Runs in worker threads; touches no shared state and writes nothing.
"""

from __future__ import annotations

import hashlib
import io
from dataclasses import dataclass

from PIL import Image

from celebref.images import ImageDecodeError, decode_image
from crawl.base import Candidate
from crawl.fetch import FetchPolicy, fetch_url, read_local_file

__all__ = ["Attempt", "ImageInfo", "inspect_image", "attempt_candidate", "FORMAT_EXTENSIONS"]

# PIL format name → file extension of the stored raw file. MPO is a multi-picture JPEG.
FORMAT_EXTENSIONS = {
    "JPEG": "jpg",
    "MPO": "jpg",
    "PNG": "png",
    "WEBP": "webp",
    "GIF": "gif",
    "BMP": "bmp",
    "TIFF": "tif",
}


@dataclass(frozen=True)
class ImageInfo:
    """Decoded size in pixels (after EXIF orientation) and the extension for the stored file."""

    width: int
    height: int
    ext: str


@dataclass(frozen=True)
class Attempt:
    """What a worker found for a candidate; ``status`` uses the manifest's vocabulary."""

    candidate: Candidate
    status: str
    error: str | None = None
    data: bytes | None = None
    nbytes: int | None = None
    sha256: str | None = None
    width: int | None = None
    height: int | None = None
    ext: str | None = None


def inspect_image(data: bytes, *, min_side: int, max_pixels: int) -> tuple[ImageInfo | None, str, str | None]:
    """Decode ``data`` fully (catches truncation) and check its size.

    Returns ``(info, status, error)`` with status ``ok``, ``failed_to_decode`` or ``too_small``.
    """
    try:
        rgb = decode_image(data, max_pixels=max_pixels)  # (H, W, 3) uint8 RGB
        with Image.open(io.BytesIO(data)) as im:
            fmt = im.format or ""
    except ImageDecodeError as exc:
        return None, "failed_to_decode", str(exc)
    except Exception as exc:  # PIL's reopen for the format name: defensive, decode already succeeded
        return None, "failed_to_decode", f"{type(exc).__name__}: {exc}"
    height, width = rgb.shape[:2]
    info = ImageInfo(
        width=int(width), height=int(height), ext=FORMAT_EXTENSIONS.get(fmt, fmt.lower() or "bin")
    )
    if min(width, height) < min_side:
        return info, "too_small", f"{width}x{height} has a side below min_side {min_side}"
    return info, "ok", None


def attempt_candidate(
    candidate: Candidate, policy: FetchPolicy, *, min_side: int, max_pixels: int
) -> Attempt:
    """Fetch (or read, for local files) and inspect one candidate. Never raises for bad input."""
    if candidate.local_path is not None:
        fetched = read_local_file(candidate.local_path, policy.max_bytes)
    else:
        fetched = fetch_url(candidate.url, policy)
    if fetched.status != "ok" or fetched.data is None:
        return Attempt(candidate, fetched.status, fetched.error)
    data = fetched.data
    sha = hashlib.sha256(data).hexdigest()
    info, status, error = inspect_image(data, min_side=min_side, max_pixels=max_pixels)
    return Attempt(
        candidate,
        status,
        error,
        data=data if status == "ok" else None,
        nbytes=len(data),
        sha256=sha,
        width=info.width if info else None,
        height=info.height if info else None,
        ext=info.ext if info else None,
    )
