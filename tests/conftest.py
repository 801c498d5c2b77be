"""Fixtures shared by several test modules."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from dmdnet.fixture_weights import generate_fixture_state_dict
from dmdnet.official import official_shapes


@pytest.fixture(scope="session")
def dmdnet_fixture_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A ``DMDNet.pth`` in the official layout holding the fixture's deterministic (untrained) weights.

    Generated once per test session: it is the slowest piece of test data to make.
    """
    path = tmp_path_factory.mktemp("dmdnet_weights") / "DMDNet.pth"
    torch.save(generate_fixture_state_dict(official_shapes()), path)
    return path
