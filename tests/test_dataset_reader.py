"""The CelebRefHQ reader over a small dataset written in the documented layout."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from celebref.images import write_png
from curate.dataset import CelebRefHQ, read_landmarks, write_landmarks


def _make(root: Path) -> None:
    rng = np.random.default_rng(0)
    for split, ident, n in [("test", "ann", 3), ("test", "bob", 2), ("train", "cy", 2)]:
        for i in range(n):
            img = rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)
            write_png(root / split / ident / f"{i}.png", img)
            write_landmarks(root / split / ident / f"{i}.landmarks.txt", rng.uniform(0, 32, (68, 2)))


def test_reader_lists_items_with_references(tmp_path: Path) -> None:
    _make(tmp_path)
    ds = CelebRefHQ(tmp_path, "test")
    assert len(ds) == 5 and ds.identities == ("ann", "bob")
    item = ds[1]
    assert item.identity == "ann" and item.record.index == 1
    assert item.image.shape == (32, 32, 3) and item.image.dtype == np.uint8
    assert item.landmarks.shape == (68, 2)
    assert [r.index for r in item.references] == [0, 2]
    assert CelebRefHQ(tmp_path, "test", with_references=False)[0].references == ()
    assert len(CelebRefHQ(tmp_path, "val")) == 0


def test_reader_errors(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="unknown split"):
        CelebRefHQ(tmp_path, "dev")
    with pytest.raises(FileNotFoundError):
        CelebRefHQ(tmp_path / "missing", "test")
    bad = tmp_path / "bad.landmarks.txt"
    bad.write_text("1 2\n3 4\n")
    with pytest.raises(ValueError, match="68"):
        read_landmarks(bad)
