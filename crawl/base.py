"""What every crawl engine shares: the candidate it yields and the interface it implements."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from crawl.identities import Identity

__all__ = ["Candidate", "Engine", "PageFetcher", "IMAGE_EXTENSIONS"]

# Fetch a search-result page; raises crawl.fetch.PageFetchError when it cannot.
PageFetcher = Callable[[str], bytes]

# File name extensions the local engine treats as images (lower case).
IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".webp", ".bmp", ".gif", ".tif", ".tiff"})


@dataclass(frozen=True)
class Candidate:
    """One image to try for an identity.

    ``url`` is what the manifest records (``http(s)://``; engines give local files their absolute
    ``file://`` URI, which the crawl records relative to its folder, see :mod:`crawl.manifest`); ``query``
    the search text that found it (None for URL lists and local folders); ``local_path`` is set only by the
    local engine, whose files are read from disk instead of downloaded.
    """

    url: str
    query: str | None = None
    local_path: Path | None = None


class Engine(Protocol):
    """A source of candidate image URLs per identity."""

    name: str

    def candidates(self, identity: Identity) -> Iterator[Candidate]:
        """Candidates for ``identity``, best first; lazily produced (pages are fetched on demand)."""
        ...

    @property
    def page_errors(self) -> int:
        """Result pages that could not be fetched so far (0 for engines without pages)."""
        ...
