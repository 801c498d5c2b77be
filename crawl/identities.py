"""Identity lists: who to crawl, under which folder name (slug) and which search query.

Two input formats, chosen by file extension:

- text (any extension but ``.csv``): one display name per line; blank lines and lines starting with ``#``
  are ignored.
- CSV (``.csv``): columns ``name[,query]``; ``query`` holds optional extra search terms appended to the
  name (``"Barack Obama","portrait"`` searches for ``Barack Obama portrait``). An optional header row
  ``name[,query]`` is skipped; blank rows and rows whose first cell starts with ``#`` are ignored.

Every bad row raises :class:`ValueError` naming the file and line.
"""

from __future__ import annotations

import csv
import hashlib
import re
import unicodedata
from dataclasses import dataclass
from pathlib import Path

__all__ = ["Identity", "slugify", "identity_from_name", "parse_identity_list"]

_NON_SLUG = re.compile(r"[^a-z0-9]+")


@dataclass(frozen=True)
class Identity:
    """One person to crawl.

    ``slug`` is the folder name under ``data/raw/`` (``[a-z0-9_]``, never starting with ``_``), ``name``
    the display name kept in the manifest, ``query`` the search text sent to search engines.
    """

    slug: str
    name: str
    query: str


def slugify(name: str) -> str:
    """Safe folder name for a display name: ``"Barack Obama"`` → ``"barack_obama"``.

    Accents are folded to ASCII (``"Penélope Cruz"`` → ``"penelope_cruz"``). A name with no ASCII letter or
    digit left (``"王菲"``) gets ``id_`` plus the first 12 hex digits of the SHA-256 of its UTF-8 bytes, so
    the slug stays deterministic.
    """
    folded = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode("ascii").lower()
    slug = _NON_SLUG.sub("_", folded).strip("_")
    if not slug:
        digest = hashlib.sha256(name.strip().encode("utf-8")).hexdigest()[:12]
        slug = f"id_{digest}"
    return slug


def identity_from_name(name: str, extra_query: str = "") -> Identity:
    """Build an :class:`Identity` from a display name and optional extra query terms."""
    name = " ".join(name.split())
    if not name:
        raise ValueError("identity name is empty")
    extra = " ".join(extra_query.split())
    query = f"{name} {extra}" if extra else name
    return Identity(slug=slugify(name), name=name, query=query)


def _check_unique(identities: list[tuple[int, Identity]], path: Path) -> list[Identity]:
    seen: dict[str, int] = {}
    for line_no, ident in identities:
        if ident.slug in seen:
            raise ValueError(
                f"{path}:{line_no}: identity {ident.name!r} has the same folder name {ident.slug!r} "
                f"as line {seen[ident.slug]}"
            )
        seen[ident.slug] = line_no
    return [ident for _, ident in identities]


def _parse_text(path: Path, text: str) -> list[Identity]:
    out: list[tuple[int, Identity]] = []
    for line_no, line in enumerate(text.splitlines(), start=1):
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        out.append((line_no, identity_from_name(stripped)))
    return _check_unique(out, path)


def _parse_csv(path: Path, text: str) -> list[Identity]:
    out: list[tuple[int, Identity]] = []
    reader = csv.reader(text.splitlines())
    first_row = True
    for row in reader:
        line_no = reader.line_num
        cells = [cell.strip() for cell in row]
        if not cells or all(not cell for cell in cells) or cells[0].startswith("#"):
            continue
        if first_row:
            first_row = False
            if [c.lower() for c in cells] in (["name"], ["name", "query"]):
                continue
        if len(cells) > 2:
            raise ValueError(
                f"{path}:{line_no}: expected columns name[,query], got {len(cells)} columns: {row}"
            )
        if not cells[0]:
            raise ValueError(f"{path}:{line_no}: empty name in row {row}")
        extra = cells[1] if len(cells) == 2 else ""
        out.append((line_no, identity_from_name(cells[0], extra)))
    return _check_unique(out, path)


def parse_identity_list(path: str | Path) -> list[Identity]:
    """Read an identity list (text or CSV, see the module docstring), in file order.

    Raises :class:`FileNotFoundError` for a missing file and :class:`ValueError` for a bad row, an empty
    list, or two names that map to the same folder name.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"identity list not found: {path}")
    text = path.read_text(encoding="utf-8-sig")
    identities = _parse_csv(path, text) if path.suffix.lower() == ".csv" else _parse_text(path, text)
    if not identities:
        raise ValueError(f"{path}: identity list is empty")
    return identities
