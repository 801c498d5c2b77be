"""The crawl manifest ``data/raw/manifest.parquet``: one row per attempt to get one image.

Columns (in order):

- ``identity`` slug (folder name), ``name`` display name, ``query`` search text (null for URL lists and
  local folders), ``engine``, ``url``: the ``http(s)://`` URL as listed, or for a local file ``file:``
  followed by its path relative to the manifest's folder, in posix form and not percent-encoded
  (``file:../faces/ada_lovelace/1.jpg``; see :func:`local_url`), so the manifest's folder and the source
  folder can move together. Manifests written before this rule hold absolute ``file:///`` URIs;
  :func:`local_path` reads both.
- ``sha256`` of the bytes (when any arrived), ``bytes`` their count, ``width`` / ``height`` in pixels (when
  they decoded)
- ``status``: one of :data:`STATUSES`; ``error``: why not ``ok`` (null for ``ok``)
- ``fetched_at``: UTC ISO-8601 time of the attempt
- ``path``: the stored file relative to the manifest's folder (``ok`` rows only). Each distinct content is
  stored once: when the same bytes were found for several identities, each has an ``ok`` row with the
  same ``sha256`` and ``path``, which lies in the folder of the identity that found it first.
- ``duplicate_of``: the stored file holding the same bytes: on ``duplicate`` rows (bytes this identity
  already has), and on ``ok`` rows whose file was first stored for another identity (null otherwise).
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from urllib.parse import urlsplit
from urllib.request import url2pathname

import pandas as pd

from celebref.atomic import atomic_write_parquet

__all__ = [
    "ManifestRow",
    "STATUSES",
    "COLUMNS",
    "MANIFEST_NAME",
    "LOCAL_URL_PREFIX",
    "local_url",
    "local_path",
    "rows_to_frame",
    "read_manifest",
    "write_manifest",
]

MANIFEST_NAME = "manifest.parquet"
LOCAL_URL_PREFIX = "file:"
STATUSES = (
    "ok",  # stored (or, found for another identity first, shared: see duplicate_of)
    "duplicate",  # same bytes already stored for this identity (see duplicate_of)
    "failed_to_download",  # network error, timeout, HTTP error status, too many redirects
    "failed_to_decode",  # bytes are no image, a truncated one, or a decompression bomb
    "refused",  # the safety policy forbade the URL or a redirect target
    "too_large",  # more than max_bytes
    "too_small",  # shorter side below min_side
)


@dataclass(frozen=True)
class ManifestRow:
    identity: str
    name: str
    query: str | None
    engine: str
    url: str
    sha256: str | None
    bytes: int | None
    width: int | None
    height: int | None
    status: str
    error: str | None
    fetched_at: str
    path: str | None = None
    duplicate_of: str | None = None

    def __post_init__(self) -> None:
        if self.status not in STATUSES:
            raise ValueError(f"unknown status {self.status!r}; allowed: {', '.join(STATUSES)}")


def local_url(path: str | Path, root: str | Path) -> str:
    """The ``url`` recorded for local file ``path`` in a manifest in folder ``root``.

    ``file:`` + the path relative to ``root`` (``..`` segments when the file lies outside it). Where no
    relative path exists (another drive), the absolute ``file://`` URI.
    """
    target = Path(path).resolve()
    try:
        relative = os.path.relpath(target, Path(root).resolve())
    except ValueError:
        return target.as_uri()
    return LOCAL_URL_PREFIX + Path(relative).as_posix()


def local_path(url: str, root: str | Path) -> Path | None:
    """The file a local ``url`` names, for a manifest in folder ``root``; None for web URLs.

    Reads both the relative form of :func:`local_url` and older absolute ``file://`` URIs.
    """
    if url.startswith("file://"):
        return Path(url2pathname(urlsplit(url).path))
    if url.startswith(LOCAL_URL_PREFIX):
        return Path(root) / url[len(LOCAL_URL_PREFIX) :]
    return None


COLUMNS = tuple(f.name for f in fields(ManifestRow))
_INT_COLUMNS = ("bytes", "width", "height")


def rows_to_frame(rows: Iterable[ManifestRow]) -> pd.DataFrame:
    """Rows as a DataFrame with the manifest's column order and dtypes (nullable ``Int64`` for counts)."""
    frame = pd.DataFrame([asdict(r) for r in rows], columns=list(COLUMNS))
    for col in _INT_COLUMNS:
        frame[col] = frame[col].astype("Int64")
    for col in COLUMNS:
        if col not in _INT_COLUMNS:
            frame[col] = frame[col].astype(object)
    return frame


def read_manifest(path: str | Path) -> pd.DataFrame:
    """The manifest at ``path``, or an empty one with the right columns when there is none yet."""
    path = Path(path)
    if not path.exists():
        return rows_to_frame([])
    frame = pd.read_parquet(path)
    missing = [c for c in COLUMNS if c not in frame.columns]
    if missing:
        raise ValueError(f"{path}: not a crawl manifest, missing columns {missing}")
    return frame[list(COLUMNS)]


def write_manifest(path: str | Path, frame: pd.DataFrame) -> None:
    """Write the manifest atomically."""
    atomic_write_parquet(path, frame[list(COLUMNS)])
