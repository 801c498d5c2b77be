"""Training samples: augmented ground truth, LQ degraded on the fly (eq. 19), and references of the identity.

Every draw of sample ``i`` in epoch ``e`` comes from :func:`degrade.model.sample_rng` ``(seed, e, i)``, in
a fixed order (degradation parameters, flip, colour jitter, number of references, which references), so a
sample is the same in any DataLoader worker and on any rank, and a resumed run sees the same data.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
import torch

from celebref.images import read_image
from curate.dataset import CelebRefHQ, FaceRecord, read_landmarks
from degrade.config import DegradationRanges
from degrade.model import DegradationParams, apply, sample_params, sample_rng
from degrade.ops import upsample_to
from degrade.pairs import EpochDataset, to_tensor
from dmdnet.boxes import component_boxes, component_boxes_batch
from dmdnet.train.augment import ColorJitter, color_jitter, flip_face

__all__ = [
    "TrainingDataConfig",
    "TrainingSample",
    "TrainingFaces",
    "extra_faces",
    "collate_samples",
    "generic_faces",
]


@dataclass(frozen=True)
class TrainingDataConfig:
    """How samples are drawn. N references: uniform in ``min_references…max_references``, capped by what
    the identity has (ASFFNet needs one: ``min_references=1``; DMDNet also learns N = 0).

    ``reference_rule="frontal"`` (GFRNet*) gives instead exactly one reference, the same for every image of
    an identity but its most frontal image itself: the most frontal of its other images
    (:func:`gfrnet.frontal.most_frontal`).
    """

    seed: int = 0
    max_references: int = 8
    min_references: int = 0
    flip_prob: float = 0.5
    jitter: ColorJitter = field(default_factory=ColorJitter)
    size: int = 512
    reference_rule: Literal["random", "frontal"] = "random"

    def __post_init__(self) -> None:
        if self.reference_rule not in ("random", "frontal"):
            raise ValueError(f"reference_rule must be 'random' or 'frontal', got {self.reference_rule!r}")
        if self.seed < 0 or self.max_references < 0 or self.size < 8:
            raise ValueError(f"seed and max_references must be >= 0 and size >= 8, got {self}")
        if not 0 <= self.min_references <= self.max_references:
            raise ValueError(f"min_references must lie in 0…max_references, got {self}")
        if not 0 <= self.flip_prob <= 1:
            raise ValueError(f"flip_prob must lie in [0, 1], got {self.flip_prob}")


@dataclass(frozen=True)
class TrainingSample:
    """One training face: tensors in ``[-1, 1]``, boxes as in :func:`dmdnet.boxes.component_boxes`.

    A flipped sample has its references flipped too (landmarks mirrored, eyes swapped, boxes recomputed).
    """

    lq: torch.Tensor  # (3, S, S)
    gt: torch.Tensor  # (3, S, S)
    boxes: torch.Tensor  # (4, 4) int64, of the (possibly flipped) ground truth
    references: torch.Tensor  # (N, 3, S, S), N >= 0, the target itself never among them
    reference_boxes: torch.Tensor  # (N, 4, 4) int64
    landmarks: torch.Tensor  # (68, 2) float32 (x, y) pixels of the (possibly flipped) ground truth
    reference_landmarks: torch.Tensor  # (N, 68, 2) float32
    identity: str
    params: DegradationParams
    flipped: bool


def extra_faces(folder: str | Path) -> tuple[FaceRecord, ...]:
    """Aligned HQ faces of a folder (``<name>.png`` + ``<name>.landmarks.txt``) for generic training only.

    They belong to no identity (``identity == ""``) and so never serve as references.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"extra face folder not found: {folder}")
    records = []
    for k, png in enumerate(sorted(folder.glob("*.png"))):
        landmarks = png.with_suffix(".landmarks.txt")
        if not landmarks.is_file():
            raise FileNotFoundError(f"{png}: no landmarks file {landmarks.name} beside it")
        records.append(FaceRecord("", "extra", k, png, landmarks))
    if not records:
        raise ValueError(f"{folder}: no aligned .png faces")
    return tuple(records)


class TrainingFaces(EpochDataset):
    """Training samples from a CelebRef-HQ split plus optional extra faces (e.g. FFHQ, generic only)."""

    def __init__(
        self,
        faces: CelebRefHQ,
        ranges: DegradationRanges,
        config: TrainingDataConfig | None = None,
        *,
        extra: Sequence[FaceRecord] = (),
    ) -> None:
        self.faces = faces
        self.ranges = ranges
        self.config = config or TrainingDataConfig()
        self.records: tuple[FaceRecord, ...] = (*faces.records, *extra)
        if not self.records:
            raise ValueError(f"no training faces in {faces.root}/{faces.split} or the extra folders")

    def __len__(self) -> int:
        return len(self.records)

    def _load(self, record: FaceRecord) -> tuple[np.ndarray, np.ndarray]:
        image, landmarks = read_image(record.image_path), read_landmarks(record.landmarks_path)
        size = self.config.size
        if image.shape != (size, size, 3):
            got = image.shape
            raise ValueError(f"{record.image_path}: expected an aligned {size}×{size} RGB face, got {got}")
        return image, landmarks

    def _most_frontal(self, candidates: Sequence[FaceRecord]) -> int:
        from gfrnet.frontal import most_frontal

        return most_frontal([read_landmarks(r.landmarks_path) for r in candidates])

    def __getitem__(self, index: int) -> TrainingSample:
        if not 0 <= index < len(self):
            raise IndexError(f"index {index} out of range for {len(self)} samples")
        cfg = self.config
        record = self.records[index]
        rng = sample_rng(cfg.seed, self.epoch, index)
        params = sample_params(rng, self.ranges)
        flip = bool(rng.random() < cfg.flip_prob)
        image, landmarks = self._load(record)
        if flip:
            image, landmarks, boxes = flip_face(image, landmarks)
        else:
            boxes = component_boxes(landmarks)
        gt = color_jitter(image, rng, cfg.jitter)
        lq = upsample_to(apply(gt, params), cfg.size)

        wanted = int(rng.integers(cfg.min_references, cfg.max_references + 1))
        candidates = self.faces.references_for(record) if record.identity else ()
        order = rng.permutation(len(candidates))
        chosen = [candidates[k] for k in order[: min(wanted, len(candidates))]]
        if cfg.reference_rule == "frontal":
            chosen = [candidates[self._most_frontal(candidates)]] if candidates else []
        loaded = [self._load(r) for r in chosen]
        if flip:
            loaded = [flip_face(im, lm)[:2] for im, lm in loaded]
        size = cfg.size
        refs = torch.stack([to_tensor(im) for im, _ in loaded]) if loaded else torch.zeros(0, 3, size, size)
        ref_marks = np.array([lm for _, lm in loaded], dtype=np.float32).reshape(-1, 68, 2)
        return TrainingSample(
            lq=to_tensor(lq),
            gt=to_tensor(gt),
            boxes=torch.from_numpy(boxes),
            references=refs,
            reference_boxes=torch.from_numpy(component_boxes_batch(ref_marks)),
            landmarks=torch.from_numpy(np.asarray(landmarks, dtype=np.float32)),
            reference_landmarks=torch.from_numpy(ref_marks),
            identity=record.identity,
            params=params,
            flipped=flip,
        )


def collate_samples(batch: Sequence[TrainingSample]) -> dict[str, object]:
    """Stack LQ, GT and boxes; references stay a list (each sample has its own N)."""
    return {
        "lq": torch.stack([s.lq for s in batch]),
        "gt": torch.stack([s.gt for s in batch]),
        "boxes": torch.stack([s.boxes for s in batch]),
        "references": [s.references for s in batch],
        "reference_boxes": [s.reference_boxes for s in batch],
        "landmarks": torch.stack([s.landmarks for s in batch]),
        "reference_landmarks": [s.reference_landmarks for s in batch],
        "identities": [s.identity for s in batch],
        "params": [s.params for s in batch],
    }


def generic_faces(faces: TrainingFaces, items: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The Y faces the generic dictionary is initialised from (paper §3.1): ``(Y, 3, S, S)``, ``(Y, 4, 4)``.

    Drawn at random from all training faces (extra folders included) with ``seed``, without augmentation;
    with fewer faces than items, faces repeat.
    """
    if items < 1:
        raise ValueError(f"items must be >= 1, got {items}")
    rng = np.random.default_rng([seed, 0x6E1])
    n = len(faces.records)
    chosen = rng.choice(n, size=items, replace=n < items)
    loaded = [faces._load(faces.records[k]) for k in chosen]
    images = torch.stack([to_tensor(im) for im, _ in loaded])
    boxes = torch.from_numpy(component_boxes_batch(np.stack([lm for _, lm in loaded])))
    return images, boxes
