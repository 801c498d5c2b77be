"""Reader for a built CelebRef-HQ dataset, for use in your own code.

Layout (written by ``python -m curate``)::

    <root>/<split>/<identity>/<n>.png             512×512 RGB, FFHQ-aligned
    <root>/<split>/<identity>/<n>.landmarks.txt   68 lines "x y" (iBUG order, pixels of the aligned image)
    <root>/manifest.parquet                       one row per image (provenance and curation scores)

Example::

    from curate.dataset import CelebRefHQ
    ds = CelebRefHQ("data/celebref", "test")
    item = ds[0]
    item.image            # (512, 512, 3) uint8 RGB
    item.landmarks        # (68, 2) float64
    item.references       # paths of the identity's other images
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from celebref.images import read_image

__all__ = ["CelebRefHQ", "FaceItem", "FaceRecord", "read_landmarks", "write_landmarks", "SPLITS"]

SPLITS = ("train", "val", "test")


def read_landmarks(path: str | Path) -> np.ndarray:
    """Read a 68-line ``x y`` landmark file as float64 ``(68, 2)``."""
    path = Path(path)
    try:
        points = np.loadtxt(path, dtype=np.float64, ndmin=2)
    except (OSError, ValueError) as exc:
        raise ValueError(f"{path}: cannot read landmarks: {exc}") from exc
    if points.shape != (68, 2):
        raise ValueError(f"{path}: expected 68 lines of 'x y', got array of shape {points.shape}")
    return points


def write_landmarks(path: str | Path, points: np.ndarray) -> None:
    """Write ``(68, 2)`` landmarks as 68 lines ``x y`` (3 decimals)."""
    if points.shape != (68, 2):
        raise ValueError(f"expected (68, 2) landmarks, got {points.shape}")
    Path(path).write_text("".join(f"{x:.3f} {y:.3f}\n" for x, y in points), encoding="utf-8")


@dataclass(frozen=True)
class FaceRecord:
    """Where one aligned image lives; cheap to list and to pickle into data-loader workers."""

    identity: str
    split: str
    index: int
    image_path: Path
    landmarks_path: Path


@dataclass(frozen=True)
class FaceItem:
    """One loaded dataset item. ``references`` are the other images of the same identity."""

    record: FaceRecord
    image: np.ndarray
    landmarks: np.ndarray
    references: tuple[FaceRecord, ...]

    @property
    def identity(self) -> str:
        return self.record.identity


class CelebRefHQ:
    """Indexable view of one split of a built dataset, ordered by (identity, image number)."""

    def __init__(self, root: str | Path, split: str, *, with_references: bool = True) -> None:
        if split not in SPLITS:
            raise ValueError(f"unknown split '{split}'; allowed: {', '.join(SPLITS)}")
        self.root = Path(root)
        self.split = split
        self.with_references = with_references
        split_dir = self.root / split
        if not self.root.is_dir():
            raise FileNotFoundError(f"dataset root not found: {self.root} (build it with `dvc repro`)")
        records: list[FaceRecord] = []
        if split_dir.is_dir():
            for identity_dir in sorted(p for p in split_dir.iterdir() if p.is_dir()):
                pngs = sorted(identity_dir.glob("*.png"), key=lambda p: int(p.stem))
                for png in pngs:
                    records.append(
                        FaceRecord(
                            identity=identity_dir.name,
                            split=split,
                            index=int(png.stem),
                            image_path=png,
                            landmarks_path=png.with_suffix(".landmarks.txt"),
                        )
                    )
        self.records: tuple[FaceRecord, ...] = tuple(records)
        by_identity: dict[str, list[FaceRecord]] = {}
        for rec in self.records:
            by_identity.setdefault(rec.identity, []).append(rec)
        self._by_identity = {k: tuple(v) for k, v in by_identity.items()}

    def __len__(self) -> int:
        return len(self.records)

    @property
    def identities(self) -> tuple[str, ...]:
        return tuple(self._by_identity)

    def images_of(self, identity: str) -> tuple[FaceRecord, ...]:
        if identity not in self._by_identity:
            raise KeyError(f"identity '{identity}' not in split '{self.split}'")
        return self._by_identity[identity]

    def references_for(self, record: FaceRecord) -> tuple[FaceRecord, ...]:
        """The identity's other images (never the item itself)."""
        return tuple(r for r in self._by_identity[record.identity] if r.index != record.index)

    def __getitem__(self, i: int) -> FaceItem:
        record = self.records[i]
        refs = self.references_for(record) if self.with_references else ()
        return FaceItem(record, read_image(record.image_path), read_landmarks(record.landmarks_path), refs)
