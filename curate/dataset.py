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
    item.references       # records (paths) of the identity's other images

Items are :class:`FaceItem` (numpy arrays), which torch's default collate cannot batch. For a
``torch.utils.data.DataLoader`` either pass ``collate_fn=collate_faces`` (batches of :class:`FaceBatch`)
or build the dataset with ``transform=to_tensors`` (items become dicts of tensors that the default collate
batches)::

    from torch.utils.data import DataLoader
    loader = DataLoader(CelebRefHQ("data/celebref", "train"), batch_size=8, shuffle=True,
                        collate_fn=collate_faces)
    batch = next(iter(loader))
    batch.images          # (8, 3, 512, 512) float32 in [0, 1]
    batch.landmarks       # (8, 68, 2) float32, pixels
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from celebref.images import read_image

if TYPE_CHECKING:  # torch is imported only by the functions that make tensors
    import torch

__all__ = [
    "CelebRefHQ",
    "FaceBatch",
    "FaceItem",
    "FaceRecord",
    "collate_faces",
    "read_landmarks",
    "to_tensors",
    "write_landmarks",
    "SPLITS",
]

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


def _image_tensor(images: np.ndarray) -> torch.Tensor:
    """RGB uint8 ``(..., H, W, 3)`` → float32 ``(..., 3, H, W)`` in ``[0, 1]``."""
    import torch

    return torch.from_numpy(np.moveaxis(images, -1, -3).astype(np.float32, order="C")).div_(255.0)


def to_tensors(item: FaceItem) -> dict[str, Any]:
    """A :class:`FaceItem` as torch's default collate batches it: ``CelebRefHQ(..., transform=to_tensors)``.

    Returns:
        ``image``: float32 ``(3, H, W)`` in ``[0, 1]``; ``landmarks``: float32 ``(68, 2)``, pixels;
        ``identity``: the identity slug; ``index``: the image number; ``path``: the image file as text.
        References are left out (their number differs between identities); read them with
        :meth:`CelebRefHQ.references_for` or batch with :func:`collate_faces`.
    """
    import torch

    return {
        "image": _image_tensor(item.image),
        "landmarks": torch.from_numpy(item.landmarks.astype(np.float32)),
        "identity": item.identity,
        "index": item.record.index,
        "path": str(item.record.image_path),
    }


@dataclass(frozen=True)
class FaceBatch:
    """A batch of :class:`FaceItem` made by :func:`collate_faces`.

    Attributes:
        images: float32 ``(B, 3, H, W)`` in ``[0, 1]``.
        landmarks: float32 ``(B, 68, 2)``, pixels of the aligned images.
        identities: the identity slug of each face.
        records: each face's :class:`FaceRecord` (paths, split, image number).
        references: each face's references (records of its identity's other images; any number).
    """

    images: torch.Tensor
    landmarks: torch.Tensor
    identities: tuple[str, ...]
    records: tuple[FaceRecord, ...]
    references: tuple[tuple[FaceRecord, ...], ...]

    def __len__(self) -> int:
        return len(self.records)


def collate_faces(items: Sequence[FaceItem]) -> FaceBatch:
    """``collate_fn`` for a ``DataLoader`` over :class:`CelebRefHQ`: stacks images and landmarks.

    Raises:
        ValueError: an empty batch, or images of different sizes.
    """
    import torch

    if not items:
        raise ValueError("collate_faces: empty batch")
    shapes = {item.image.shape for item in items}
    if len(shapes) != 1:
        raise ValueError(f"collate_faces: images of different shapes {sorted(shapes)} in one batch")
    return FaceBatch(
        images=_image_tensor(np.stack([item.image for item in items])),
        landmarks=torch.from_numpy(np.stack([item.landmarks for item in items]).astype(np.float32)),
        identities=tuple(item.identity for item in items),
        records=tuple(item.record for item in items),
        references=tuple(item.references for item in items),
    )


class CelebRefHQ:
    """Indexable view of one split of a built dataset, ordered by (identity, image number).

    ``dataset[i]`` is a :class:`FaceItem`, or ``transform(item)`` when a ``transform`` is given (e.g.
    :func:`to_tensors`, for torch's default collate); for a ``DataLoader`` without a transform, pass
    ``collate_fn=collate_faces``.
    """

    def __init__(
        self,
        root: str | Path,
        split: str,
        *,
        with_references: bool = True,
        transform: Callable[[FaceItem], Any] | None = None,
    ) -> None:
        if split not in SPLITS:
            raise ValueError(f"unknown split '{split}'; allowed: {', '.join(SPLITS)}")
        self.root = Path(root)
        self.split = split
        self.with_references = with_references
        self.transform = transform
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
        """The records of ``identity`` in this split; ``KeyError`` naming some that exist otherwise."""
        if identity not in self._by_identity:
            known = self.identities
            listed = ", ".join(known[:5]) + (f", … ({len(known)} in all)" if len(known) > 5 else "")
            raise KeyError(
                f"identity '{identity}' not in split '{self.split}' of {self.root}; "
                + (f"its identities: {listed}" if known else "the split is empty")
            )
        return self._by_identity[identity]

    def references_for(self, record: FaceRecord) -> tuple[FaceRecord, ...]:
        """The identity's other images (never the item itself)."""
        return tuple(r for r in self._by_identity[record.identity] if r.index != record.index)

    def __getitem__(self, i: int) -> Any:
        """The :class:`FaceItem` at ``i`` (``transform(item)`` when the dataset has a transform)."""
        record = self.records[i]
        refs = self.references_for(record) if self.with_references else ()
        item = FaceItem(record, read_image(record.image_path), read_landmarks(record.landmarks_path), refs)
        return item if self.transform is None else self.transform(item)
