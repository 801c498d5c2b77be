"""Atomic output: write to a temporary sibling, then rename, so a crash leaves no half-written file.

Files and folders are created the way ``open()`` and ``mkdir`` create them: mode ``0o666`` / ``0o777``
less the process umask (a default ACL of the parent folder applies too), so a dataset written with umask
``022`` is readable by everyone, with ``027`` by the group. The temporary name is ``.<name>.<random>.tmp``.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # only the parquet writer takes a frame: plain file writes need no pandas
    import pandas as pd

__all__ = ["atomic_path", "atomic_dir", "atomic_write_bytes", "atomic_write_text", "atomic_write_parquet"]


_ATTEMPTS = 100


def _create_sibling(path: Path, create: Callable[[Path], None]) -> Path:
    """Make a fresh ``.<name>.<random>.tmp`` beside ``path`` by ``create``, which fails if it exists."""
    for _ in range(_ATTEMPTS):
        tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
        try:
            create(tmp)
        except FileExistsError:
            continue
        return tmp
    raise FileExistsError(f"no free temporary name beside {path}")


def _new_file(tmp: Path) -> None:
    # O_EXCL: never reuse a name; 0o666: the kernel takes the umask off, as open() does
    os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))


def _new_dir(tmp: Path) -> None:
    tmp.mkdir(mode=0o777)  # less the umask, as mkdir does


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success rename it into place, on error remove it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _create_sibling(path, _new_file)
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


@contextlib.contextmanager
def atomic_dir(path: str | Path) -> Iterator[Path]:
    """Yield a fresh temporary directory beside ``path``; on success it replaces ``path`` whole."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _create_sibling(path, _new_dir)
    try:
        yield tmp
        if path.exists():
            old = path.with_name(f".{path.name}.old")
            if old.exists():
                shutil.rmtree(old)
            os.replace(path, old)
            os.replace(tmp, path)
            shutil.rmtree(old)
        else:
            os.replace(tmp, path)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def atomic_write_text(path: str | Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_parquet(path: str | Path, frame: pd.DataFrame) -> None:
    with atomic_path(path) as tmp:
        frame.to_parquet(tmp, index=False)
