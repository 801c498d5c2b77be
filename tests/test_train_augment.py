"""Flip, colour jitter and per-sample seeding for training."""

from __future__ import annotations

import numpy as np
import pytest

from celebref.images import read_image
from dmdnet.boxes import component_boxes
from dmdnet.train.augment import IBUG68_MIRROR, ColorJitter, color_jitter, flip_face, sample_rng
from tests.paths import DMDNET_FIXTURE


@pytest.fixture(scope="module")
def face() -> tuple[np.ndarray, np.ndarray]:
    return read_image(DMDNET_FIXTURE / "hq.png"), np.loadtxt(DMDNET_FIXTURE / "hq_landmarks.txt")


def test_mirror_permutation_is_an_involution_that_swaps_the_eyes():
    assert sorted(IBUG68_MIRROR) == list(range(68))
    assert (IBUG68_MIRROR[IBUG68_MIRROR] == np.arange(68)).all()
    assert list(IBUG68_MIRROR[36:42]) == [45, 44, 43, 42, 47, 46]
    assert list(IBUG68_MIRROR[[0, 8, 30, 48, 51, 57, 62]]) == [16, 8, 30, 54, 51, 57, 62]


def test_flip_mirrors_image_landmarks_and_boxes(face):
    image, lm = face
    width = image.shape[1]
    flipped, flm, fboxes = flip_face(image, lm)
    assert np.array_equal(flipped, image[:, ::-1])
    # the image's left eye after the flip is the mirrored right eye before it
    mirrored_right = np.stack([width - 1 - lm[42:48, 0], lm[42:48, 1]], axis=1)
    np.testing.assert_allclose(np.sort(flm[36:42], axis=0), np.sort(mirrored_right, axis=0))
    assert flm[36:42, 0].mean() < flm[42:48, 0].mean()  # points 36–41 stay the eye on the image's left
    np.testing.assert_allclose(flm[30], [width - 1 - lm[30, 0], lm[30, 1]])  # the nose tip keeps its index
    # a marked pixel at landmark 36 lands at the flipped face's landmark 45
    marked = image.copy()
    x, y = np.rint(lm[36]).astype(int)
    marked[y, x] = (255, 0, 255)
    fm, flm2, _ = flip_face(marked, np.rint(lm))
    fx, fy = flm2[45].astype(int)
    assert tuple(fm[fy, fx]) == (255, 0, 255)
    # boxes: the image-left eye box is the mirror of the image-right one before (the official rule's
    # +1 and truncation make it exact to one pixel)
    boxes = component_boxes(lm)
    left, right = fboxes[0], boxes[1]
    np.testing.assert_allclose(left[[1, 3]], right[[1, 3]], atol=1)
    np.testing.assert_allclose(left[[0, 2]], width - 1 - right[[2, 0]], atol=1)
    np.testing.assert_array_equal(fboxes, component_boxes(flm))
    # twice is the identity
    back, blm, bboxes = flip_face(flipped, flm)
    assert np.array_equal(back, image)
    np.testing.assert_allclose(blm, lm, atol=1e-9)
    np.testing.assert_array_equal(bboxes, boxes)


def test_flip_rejects_bad_input(face):
    image, lm = face
    with pytest.raises(ValueError, match="68, 2"):
        flip_face(image, lm[:5])


def test_color_jitter_is_seeded_and_bounded(face):
    image, _ = face
    jitter = ColorJitter(0.2, 0.2, 0.2)
    a = color_jitter(image, sample_rng(0, 1, 2), jitter)
    b = color_jitter(image, sample_rng(0, 1, 2), jitter)
    c = color_jitter(image, sample_rng(0, 1, 3), jitter)
    assert np.array_equal(a, b) and not np.array_equal(a, c)
    assert a.dtype == np.uint8 and a.shape == image.shape
    assert np.array_equal(color_jitter(image, sample_rng(0, 0, 0), ColorJitter(0, 0, 0)), image)
    with pytest.raises(ValueError, match=r"\[0, 1\)"):
        ColorJitter(brightness=1.5)


def test_sample_rng_depends_on_seed_epoch_and_index():
    draws = {key: sample_rng(*key).integers(0, 2**62) for key in [(0, 0, 0), (0, 0, 1), (0, 1, 0), (1, 0, 0)]}
    assert len(set(draws.values())) == 4
    assert sample_rng(0, 0, 1).integers(0, 2**62) == draws[(0, 0, 1)]
    with pytest.raises(ValueError, match=">= 0"):
        sample_rng(0, -1, 0)
