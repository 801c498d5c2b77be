"""Training samples over a small dataset in the documented layout (32×32 faces)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from celebref.images import write_png
from curate.dataset import CelebRefHQ, write_landmarks
from degrade.config import DegradationRanges
from degrade.pairs import to_tensor
from dmdnet.train.augment import ColorJitter
from dmdnet.train.data import TrainingDataConfig, TrainingFaces, collate_samples, extra_faces

SIZE = 32


def _write_face(path: Path, rng: np.random.Generator) -> None:
    write_png(path, rng.integers(0, 256, (SIZE, SIZE, 3), dtype=np.uint8))
    write_landmarks(path.with_suffix(".landmarks.txt"), rng.uniform(4, 28, (68, 2)))


@pytest.fixture()
def dataset(tmp_path: Path) -> CelebRefHQ:
    rng = np.random.default_rng(0)
    for ident, n in [("ann", 5), ("bob", 1)]:
        for i in range(n):
            _write_face(tmp_path / "train" / ident / f"{i}.png", rng)
    return CelebRefHQ(tmp_path, "train")


def _config(**kw) -> TrainingDataConfig:
    return TrainingDataConfig(**{"seed": 3, "max_references": 4, "size": SIZE, **kw})


def test_references_exclude_the_target_and_cover_zero_to_max(dataset):
    faces = TrainingFaces(dataset, DegradationRanges(), _config())
    counts = set()
    for epoch in range(6):
        faces.set_epoch(epoch)
        for i in range(len(faces)):
            s = faces[i]
            n = s.references.shape[0]
            counts.add(n)
            assert s.reference_boxes.shape == (n, 4, 4)
            record = dataset.records[i]
            # the target's own image never stands among its references
            own = to_tensor(dataset[i].image)
            assert not any(torch.allclose(r, own) for r in s.references)
            if record.identity == "bob":
                assert n == 0  # no other image of bob exists
    assert counts == {0, 1, 2, 3, 4}


def test_draws_follow_seed_epoch_and_index(dataset):
    faces = TrainingFaces(dataset, DegradationRanges(), _config())
    a, b = faces[2], faces[2]
    assert torch.equal(a.lq, b.lq) and a.params == b.params and a.flipped == b.flipped
    faces.set_epoch(1)
    assert faces[2].params != a.params
    other = TrainingFaces(dataset, DegradationRanges(), _config(seed=4))
    assert other[2].params != a.params


def test_flip_and_jitter_are_applied(dataset):
    ranges = DegradationRanges()
    plain = TrainingFaces(dataset, ranges, _config(flip_prob=0.0, jitter=ColorJitter(0, 0, 0)))
    flipped = TrainingFaces(dataset, ranges, _config(flip_prob=1.0, jitter=ColorJitter(0, 0, 0)))
    p, f = plain[0], flipped[0]
    assert not p.flipped and f.flipped
    assert torch.equal(f.gt, p.gt.flip(-1))
    assert not torch.equal(f.boxes, p.boxes)
    jittered = TrainingFaces(dataset, ranges, _config(flip_prob=0.0, jitter=ColorJitter(0.3, 0.3, 0.3)))[0]
    assert not torch.equal(jittered.gt, p.gt)


def test_extra_faces_are_generic_only(dataset, tmp_path):
    folder = tmp_path / "ffhq"
    rng = np.random.default_rng(1)
    for k in range(2):
        _write_face(folder / f"{k:05d}.png", rng)
    faces = TrainingFaces(dataset, DegradationRanges(), _config(), extra=extra_faces(folder))
    assert len(faces) == len(dataset) + 2
    assert all(faces[i].references.shape[0] == 0 for i in (len(faces) - 2, len(faces) - 1))
    (folder / "00000.landmarks.txt").unlink()
    with pytest.raises(FileNotFoundError, match="no landmarks file"):
        extra_faces(folder)
    with pytest.raises(FileNotFoundError, match="not found"):
        extra_faces(tmp_path / "missing")


def test_loader_workers_give_the_same_batches(dataset):
    faces = TrainingFaces(dataset, DegradationRanges(), _config())
    batches = [
        list(DataLoader(faces, batch_size=3, num_workers=w, collate_fn=collate_samples)) for w in (0, 2)
    ]
    for one, two in zip(*batches, strict=True):
        assert torch.equal(one["lq"], two["lq"]) and torch.equal(one["boxes"], two["boxes"])
        assert [r.shape for r in one["references"]] == [r.shape for r in two["references"]]


def test_bad_config_and_images(dataset, tmp_path):
    with pytest.raises(ValueError, match="flip_prob"):
        TrainingDataConfig(flip_prob=2)
    wrong_size = TrainingFaces(dataset, DegradationRanges(), _config(size=64))
    with pytest.raises(ValueError, match="expected an aligned 64"):
        wrong_size[0]
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="no training faces"):
        TrainingFaces(CelebRefHQ(tmp_path / "empty", "train"), DegradationRanges())
