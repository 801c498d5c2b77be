"""Engine ``local``: images already on disk, one sub-folder per identity (the offline demo's source).

Layout: ``<root>/<identity>/*``. Every sub-folder is an identity except those whose name starts with
``_``; files at the top level (``README.md``, ``SOURCES.tsv``) and files that are not images by extension
are skipped. A distractor folder (``_distractors``) stands in for the wrong-person results of a web
search: its images, sorted by name, are dealt round-robin over the identities sorted by slug, at most
``per_identity`` each, and crawled into that identity after its own images.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from pathlib import Path

from crawl.base import IMAGE_EXTENSIONS, Candidate
from crawl.identities import Identity, slugify

__all__ = ["LocalFolderEngine", "list_local_identities", "image_files", "deal_distractors"]

log = logging.getLogger(__name__)


def image_files(folder: Path) -> list[Path]:
    """Image files directly in ``folder`` (by extension, any case), sorted by name; no hidden files."""
    return sorted(
        p
        for p in folder.iterdir()
        if p.is_file() and not p.name.startswith(".") and p.suffix.lower() in IMAGE_EXTENSIONS
    )


def _identity_folders(root: Path) -> dict[str, Path]:
    if not root.is_dir():
        raise FileNotFoundError(f"local_root is not a folder: {root}")
    folders: dict[str, Path] = {}
    for sub in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(("_", "."))):
        slug = slugify(sub.name)
        if slug in folders:
            raise ValueError(
                f"{root}: folders {folders[slug].name!r} and {sub.name!r} map to one slug {slug!r}"
            )
        folders[slug] = sub
    return folders


def list_local_identities(root: str | Path) -> list[Identity]:
    """Identities of a local folder tree, sorted by slug; display name from the folder name.

    ``barack_obama/`` → ``Identity("barack_obama", "Barack Obama", "Barack Obama")``.
    """
    out = []
    for slug, folder in _identity_folders(Path(root)).items():
        name = " ".join(part.capitalize() for part in folder.name.replace("_", " ").split())
        out.append(Identity(slug=slug, name=name, query=name))
    return sorted(out, key=lambda ident: ident.slug)


def deal_distractors(
    distractors: Sequence[Path], slugs: Sequence[str], per_identity: int
) -> dict[str, list[Path]]:
    """Deal ``distractors`` (in the given order) round-robin over ``sorted(slugs)``, at most ``per_identity``.

    Distractor ``i`` goes to identity ``i mod n``; once every identity holds ``per_identity`` the rest are
    unused. Returns ``{slug: [paths]}`` with every slug present.
    """
    order = sorted(slugs)
    dealt: dict[str, list[Path]] = {slug: [] for slug in order}
    if not order or per_identity <= 0:
        return dealt
    for i, path in enumerate(distractors[: per_identity * len(order)]):
        dealt[order[i % len(order)]].append(path)
    return dealt


class LocalFolderEngine:
    """Candidates from local folders; see the module docstring for the layout and the distractor rule."""

    name = "local"
    page_errors = 0

    def __init__(
        self,
        root: str | Path,
        identities: Sequence[Identity],
        *,
        distractor_dir: str | None = None,
        distractors_per_identity: int = 0,
    ) -> None:
        self.root = Path(root)
        self._folders = _identity_folders(self.root)
        missing = [ident.slug for ident in identities if ident.slug not in self._folders]
        if missing:
            log.warning(
                "local engine: no folder under %s for %d identities: %s", self.root, len(missing), missing
            )
        self._distractors: dict[str, list[Path]] = {}
        if distractor_dir is not None:
            folder = self.root / distractor_dir
            if not folder.is_dir():
                raise FileNotFoundError(
                    f"distractor_dir {distractor_dir!r} is not a folder under {self.root}"
                )
            slugs = [ident.slug for ident in identities]
            self._distractors = deal_distractors(image_files(folder), slugs, distractors_per_identity)

    def candidates(self, identity: Identity) -> Iterator[Candidate]:
        own = image_files(self._folders[identity.slug]) if identity.slug in self._folders else []
        for path in [*own, *self._distractors.get(identity.slug, [])]:
            yield Candidate(url=path.resolve().as_uri(), query=None, local_path=path)
