"""Fixtures shared by several test modules."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch

from crawl.config import CrawlConfig
from crawl.run import run as crawl_run
from dmdnet.fixture_weights import generate_fixture_state_dict
from dmdnet.official import official_shapes
from tests.paths import DEMO_FACES, DMDNET_FIXTURE


@pytest.fixture(scope="session")
def dmdnet_fixture_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A ``DMDNet.pth`` in the official layout holding the fixture's deterministic (untrained) weights.

    Generated once per test session: it is the slowest piece of test data to make.
    """
    path = tmp_path_factory.mktemp("dmdnet_weights") / "DMDNet.pth"
    torch.save(generate_fixture_state_dict(official_shapes()), path)
    return path


@pytest.fixture(scope="session")
def dataset_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A CelebRef-HQ folder of the DMDNet fixture's four faces (training tests).

    train: identity ``a`` (three faces, so references exist) and ``b`` (one); val: one face.
    """
    root = tmp_path_factory.mktemp("celebref")
    faces = [(DMDNET_FIXTURE / "hq.png", DMDNET_FIXTURE / "hq_landmarks.txt")] + [
        (DMDNET_FIXTURE / "refs" / f"ref_{k}.png", DMDNET_FIXTURE / "refs" / f"ref_{k}_landmarks.txt")
        for k in range(3)
    ]
    places = [("train", "a", 0), ("train", "a", 1), ("train", "a", 2), ("train", "b", 0), ("val", "c", 0)]
    for (split, ident, k), (png, lm) in zip(places, [*faces, faces[0]], strict=True):
        folder = root / split / ident
        folder.mkdir(parents=True, exist_ok=True)
        shutil.copy(png, folder / f"{k}.png")
        shutil.copy(lm, folder / f"{k}.landmarks.txt")
    return root


@pytest.fixture(scope="session")
def planted_raw(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A raw crawl of the demo photos with all eleven photos of other people planted among them (6 + 5),
    the way a web image search returns them."""
    raw = tmp_path_factory.mktemp("raw")
    config = CrawlConfig(
        engine="local",
        local_root=DEMO_FACES,
        distractor_dir="_distractors",
        distractors_per_identity=6,
        workers=2,
    )
    crawl_run(config, raw)
    return raw
