"""Engine ``urls``: a CSV of ``identity,url`` rows (an optional ``identity,url`` header is skipped).

``identity`` is a display name or a slug; rows are grouped by its slug. Blank rows and rows whose first
cell starts with ``#`` are ignored. URLs are not judged here: the fetcher refuses what the safety policy
forbids and records why.
"""

from __future__ import annotations

import csv
import logging
from collections.abc import Iterator, Sequence
from pathlib import Path

from crawl.base import Candidate
from crawl.identities import Identity, identity_from_name

__all__ = ["parse_url_list", "url_list_identities", "UrlListEngine"]

log = logging.getLogger(__name__)


def parse_url_list(path: str | Path) -> list[tuple[Identity, str]]:
    """Read ``identity,url`` rows in file order. Raises ValueError naming file and line for a bad row."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"url list not found: {path}")
    rows: list[tuple[Identity, str]] = []
    reader = csv.reader(path.read_text(encoding="utf-8-sig").splitlines())
    first = True
    for row in reader:
        cells = [cell.strip() for cell in row]
        if not cells or all(not c for c in cells) or cells[0].startswith("#"):
            continue
        if first:
            first = False
            if [c.lower() for c in cells] == ["identity", "url"]:
                continue
        if len(cells) != 2:
            raise ValueError(
                f"{path}:{reader.line_num}: expected columns identity,url, got {len(cells)}: {row}"
            )
        if not cells[0] or not cells[1]:
            raise ValueError(f"{path}:{reader.line_num}: empty identity or url in row {row}")
        rows.append((identity_from_name(cells[0]), cells[1]))
    if not rows:
        raise ValueError(f"{path}: url list is empty")
    return rows


def url_list_identities(rows: Sequence[tuple[Identity, str]]) -> list[Identity]:
    """Distinct identities of a URL list, in order of first appearance (first spelling wins)."""
    seen: dict[str, Identity] = {}
    for ident, _ in rows:
        seen.setdefault(ident.slug, Identity(slug=ident.slug, name=ident.name, query=""))
    return list(seen.values())


class UrlListEngine:
    """Candidates straight from a URL list."""

    name = "urls"
    page_errors = 0

    def __init__(self, rows: Sequence[tuple[Identity, str]], identities: Sequence[Identity]) -> None:
        self._urls: dict[str, list[str]] = {}
        for ident, url in rows:
            self._urls.setdefault(ident.slug, []).append(url)
        wanted = {ident.slug for ident in identities}
        unused = sorted(set(self._urls) - wanted)
        if unused:
            log.warning(
                "url list: %d identities not in the identity list are ignored: %s", len(unused), unused
            )

    def candidates(self, identity: Identity) -> Iterator[Candidate]:
        for url in self._urls.get(identity.slug, []):
            yield Candidate(url=url, query=None)
