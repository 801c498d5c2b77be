"""The CelebRefHQ reader in a torch DataLoader: ``collate_fn=collate_faces`` or ``transform=to_tensors``."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from celebref.images import write_png
from curate import dataset
from curate.dataset import CelebRefHQ, write_landmarks

SIZE = 48


@pytest.fixture()
def root(tmp_path: Path) -> Path:
    """test: ``ann`` with 3 faces, ``bob`` with 2; random RGB images and landmarks."""
    rng = np.random.default_rng(0)
    for ident, n in (("ann", 3), ("bob", 2)):
        for i in range(n):
            write_png(
                tmp_path / "test" / ident / f"{i}.png", rng.integers(0, 256, (SIZE, SIZE, 3), dtype=np.uint8)
            )
            write_landmarks(tmp_path / "test" / ident / f"{i}.landmarks.txt", rng.uniform(0, SIZE, (68, 2)))
    return tmp_path


def test_collate_faces_batches_images_and_landmarks(root: Path) -> None:
    faces = CelebRefHQ(root, "test")
    loader = DataLoader(faces, batch_size=2, shuffle=False, collate_fn=dataset.collate_faces)
    batches = list(loader)
    assert [len(b) for b in batches] == [2, 2, 1]
    first = batches[0]
    assert first.images.shape == (2, 3, SIZE, SIZE) and first.images.dtype == torch.float32
    assert first.landmarks.shape == (2, 68, 2) and first.landmarks.dtype == torch.float32
    assert 0.0 <= float(first.images.min()) and float(first.images.max()) <= 1.0
    item = faces[1]
    expected = torch.tensor(item.image).permute(2, 0, 1).float() / 255.0
    torch.testing.assert_close(first.images[1], expected)
    torch.testing.assert_close(first.landmarks[1], torch.tensor(item.landmarks).float())
    assert first.identities == ("ann", "ann") and batches[2].identities == ("bob",)
    assert [r.index for r in first.references[1]] == [0, 2]  # the identity's other images
    assert first.records[1] == item.record


def test_transform_to_tensors_works_with_the_default_collate(root: Path) -> None:
    faces = CelebRefHQ(root, "test", transform=dataset.to_tensors)
    batch = next(iter(DataLoader(faces, batch_size=2, shuffle=False)))
    assert batch["image"].shape == (2, 3, SIZE, SIZE) and batch["image"].dtype == torch.float32
    assert batch["landmarks"].shape == (2, 68, 2) and batch["landmarks"].dtype == torch.float32
    assert batch["identity"] == ["ann", "ann"]
    assert batch["index"].tolist() == [0, 1]
    plain = CelebRefHQ(root, "test")[0]
    torch.testing.assert_close(batch["image"][0], torch.tensor(plain.image).permute(2, 0, 1).float() / 255)


def test_collate_refuses_mixed_sizes_and_empty_batches(root: Path) -> None:
    faces = CelebRefHQ(root, "test")
    small = dataset.FaceItem(faces[0].record, faces[0].image[:16, :16], faces[0].landmarks, ())
    with pytest.raises(ValueError, match="different shapes"):
        dataset.collate_faces([faces[1], small])
    with pytest.raises(ValueError, match="empty batch"):
        dataset.collate_faces([])


def test_unknown_identity_names_known_ones(root: Path) -> None:
    faces = CelebRefHQ(root, "test")
    assert [r.index for r in faces.images_of(faces.identities[0])] == [0, 1, 2]
    with pytest.raises(KeyError, match=r"'barack_obama' not in split 'test'.*ann, bob"):
        faces.images_of("barack_obama")
    (root / "val").mkdir()
    with pytest.raises(KeyError, match="the split is empty"):
        CelebRefHQ(root, "val").images_of("ann")
