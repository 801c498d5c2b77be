"""Give freed heap memory back to the operating system (glibc ``malloc_trim``).

Inference frees many feature maps of 8–19 MB. glibc keeps freed chunks of that size in its heap, so
memory freed by one phase of the network stays resident while the next phase allocates maps of other
sizes; the process's peak RSS then exceeds the live tensors by a few hundred MB. Trimming between phases
releases those pages. On other C libraries this is a no-op.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools

__all__ = ["release_free_heap"]


@functools.cache
def _malloc_trim():  # noqa: ANN202 - a ctypes function or None
    name = ctypes.util.find_library("c")
    if name is None:
        return None
    try:
        fn = ctypes.CDLL(name).malloc_trim
    except (OSError, AttributeError):  # not glibc
        return None
    fn.argtypes = [ctypes.c_size_t]
    fn.restype = ctypes.c_int
    return fn


def release_free_heap() -> bool:
    """Return freed heap pages to the OS; ``True`` if glibc's ``malloc_trim`` was available."""
    fn = _malloc_trim()
    if fn is None:
        return False
    fn(0)
    return True
