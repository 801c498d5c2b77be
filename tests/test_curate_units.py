"""Pure curation pieces: sharpness, hashing, identity consistency on synthetic embeddings, split."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from curate.identity import consistent_faces, curate_identities, robust_center
from curate.quality import difference_hash, face_sharpness, hamming_distance, laplacian_variance
from curate.split import split_counts, split_identities
from faces.types import FaceBox


def _unit(v: np.ndarray) -> np.ndarray:
    return v / np.linalg.norm(v, axis=-1, keepdims=True)


def _cluster(rng: np.random.Generator, center: np.ndarray, n: int, spread: float = 0.1) -> list[np.ndarray]:
    return [_unit(center + spread * rng.standard_normal(center.shape))[None] for _ in range(n)]


def test_laplacian_variance_orders_sharp_above_blurred() -> None:
    rng = np.random.default_rng(0)
    sharp = rng.integers(0, 256, (128, 128, 3), dtype=np.uint8)
    blurred = cv2.GaussianBlur(sharp, (9, 9), 3)
    box = FaceBox(0, 0, 128, 128)
    assert face_sharpness(sharp, box) > 10 * face_sharpness(blurred, box)
    assert laplacian_variance(np.full((32, 32), 7.0)) == 0.0
    with pytest.raises(ValueError):
        laplacian_variance(sharp)


def test_difference_hash_survives_reencoding_but_separates_images() -> None:
    rng = np.random.default_rng(1)
    a = cv2.GaussianBlur(rng.integers(0, 256, (256, 256, 3), dtype=np.uint8), (15, 15), 4)
    b = cv2.GaussianBlur(rng.integers(0, 256, (256, 256, 3), dtype=np.uint8), (15, 15), 4)
    ok, enc = cv2.imencode(".jpg", a, [cv2.IMWRITE_JPEG_QUALITY, 70])
    assert ok
    a_jpeg = cv2.resize(cv2.imdecode(enc, cv2.IMREAD_COLOR), (200, 200), interpolation=cv2.INTER_AREA)
    assert hamming_distance(difference_hash(a), difference_hash(a_jpeg)) <= 12
    assert hamming_distance(difference_hash(a), difference_hash(b)) > 60


def test_intruders_removed_even_when_they_outnumber_the_identity() -> None:
    rng = np.random.default_rng(2)
    person = _unit(rng.standard_normal(128))
    genuine = _cluster(rng, person, 4, spread=0.02)
    intruders = [_unit(rng.standard_normal(128))[None] for _ in range(6)]  # six different other people
    photos = genuine + intruders
    center, choices = consistent_faces(photos, threshold=0.5)
    assert center is not None and np.linalg.norm(_unit(center) - person) < 0.2
    assert [c.kept for c in choices] == [True] * 4 + [False] * 6
    assert all(c.reason == "identity_outlier" for c in choices[4:])
    assert robust_center(photos, 0.5).shape == (128,)


def test_group_photo_picks_the_identity_face() -> None:
    rng = np.random.default_rng(3)
    person = _unit(rng.standard_normal(64))
    genuine = _cluster(rng, person, 3, spread=0.02)
    stranger = _unit(rng.standard_normal(64))
    group_photo = np.stack([stranger, _unit(person + 0.02 * rng.standard_normal(64))])  # person is face 1
    crowd_without_person = np.stack([_unit(rng.standard_normal(64)) for _ in range(3)])
    _, choices = consistent_faces(genuine + [group_photo, crowd_without_person], threshold=0.5)
    assert choices[3].kept and choices[3].face == 1
    assert not choices[4].kept and choices[4].reason == "several_faces"


def test_cross_identity_check_removes_photo_nearer_another_identity() -> None:
    rng = np.random.default_rng(4)
    a, b = _unit(rng.standard_normal(32)), _unit(rng.standard_normal(32))
    # A photo of b filed under a, close enough to a's median to pass the threshold alone.
    mid = _unit(0.45 * a + 0.55 * b)[None]
    candidates = {"a": _cluster(rng, a, 4, 0.02) + [mid], "b": _cluster(rng, b, 4, 0.02)}
    threshold = float(np.linalg.norm(mid[0] - a)) + 0.05
    result = curate_identities(candidates, threshold)
    assert [c.kept for c in result["a"]] == [True] * 4 + [False]
    assert "nearer to identity 'b'" in result["a"][4].detail
    assert all(c.kept for c in result["b"])


def test_consistent_faces_rejects_bad_threshold() -> None:
    with pytest.raises(ValueError):
        consistent_faces([np.zeros((1, 4))], threshold=0)


def test_split_counts_match_the_paper_proportions() -> None:
    paper = {"train": 805, "val": 50, "test": 150}
    assert split_counts(1005, paper) == paper
    assert split_counts(2, {"train": 805, "val": 0, "test": 150}) == {"train": 1, "val": 0, "test": 1}
    assert sum(split_counts(17, {"train": 8, "val": 1, "test": 2}).values()) == 17
    with pytest.raises(ValueError):
        split_counts(3, {"train": -1, "test": 1})


def test_split_is_identity_disjoint_seeded_and_order_free() -> None:
    names = [f"person_{i:03d}" for i in range(100)]
    weights = {"train": 805, "val": 50, "test": 150}
    first = split_identities(names, weights, seed=7)
    assert first == split_identities(list(reversed(names)), weights, seed=7)
    assert first != split_identities(names, weights, seed=8)
    assert set(first) == set(names)
    counts = {s: sum(v == s for v in first.values()) for s in weights}
    assert counts == {"train": 80, "val": 5, "test": 15}
