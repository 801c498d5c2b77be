"""dlib backend on real public-domain photos: detection, landmarks, identity embeddings."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest

from celebref.images import read_image
from faces.dlib_backend import DlibDetector, DlibEmbedder, DlibLandmarker, landmarks_to_shape
from faces.types import Detector, FaceBox, IdentityEmbedder, Landmarker
from faces.weights import WeightsNotFoundError
from tests.paths import DEMO_FACES

DEMO = DEMO_FACES


def photo(relative: str) -> np.ndarray:
    return read_image(DEMO / relative)


@pytest.fixture(scope="module")
def detector() -> DlibDetector:
    return DlibDetector(model="hog", upsample=1)


@pytest.fixture(scope="module")
def landmarker() -> DlibLandmarker:
    return DlibLandmarker()


@pytest.fixture(scope="module")
def embedder() -> DlibEmbedder:
    return DlibEmbedder()


@pytest.fixture(scope="module")
def analysed(detector, landmarker, embedder) -> dict[str, tuple[FaceBox, np.ndarray, np.ndarray]]:
    """Largest face, its landmarks and its embedding for a few photos (computed once)."""
    out = {}
    for rel in (
        "barack_obama/1.jpg",
        "barack_obama/2.jpg",
        "barack_obama/3.jpg",
        "joe_biden/1.jpg",
        "_distractors/mike_pence.jpg",
        "_distractors/kamala_harris.jpg",
    ):
        image = photo(rel)
        box = detector.detect(image)[0]
        lms = landmarker.landmarks(image, box)
        out[rel] = (box, lms, embedder.embed(image, lms))
    return out


def test_protocols(detector, landmarker, embedder) -> None:
    assert isinstance(detector, Detector)
    assert isinstance(landmarker, Landmarker)
    assert isinstance(embedder, IdentityEmbedder)
    assert embedder.name == "dlib"


def test_single_face_photo(detector) -> None:
    image = photo("barack_obama/1.jpg")
    boxes = detector.detect(image)
    assert len(boxes) == 1
    box = boxes[0]
    h, w = image.shape[:2]
    assert 0 <= box.left < box.right <= w and 0 <= box.top < box.bottom <= h
    assert box.size > 150  # a portrait: the face is large


def test_crowd_photo_has_several_faces_largest_first(detector) -> None:
    boxes = detector.detect(photo("barack_obama/4.jpg"))
    assert len(boxes) >= 3
    areas = [b.area for b in boxes]
    assert areas == sorted(areas, reverse=True)


def test_blank_image_has_no_face(detector) -> None:
    assert detector.detect(np.full((400, 300, 3), 128, np.uint8)) == []


def test_max_side_downscale_keeps_boxes_in_original_pixels(detector) -> None:
    image = photo("barack_obama/1.jpg")
    full = detector.detect(image)[0]
    small = DlibDetector(upsample=1, max_side=800).detect(image)
    assert len(small) == 1
    # Same face, box reported in full-resolution pixels (within a few % of its size).
    for a, b in ((full.left, small[0].left), (full.top, small[0].top), (full.right, small[0].right)):
        assert abs(a - b) < 0.1 * full.size


def test_bad_arguments() -> None:
    with pytest.raises(ValueError, match="hog, cnn"):
        DlibDetector(model="retina")
    with pytest.raises(ValueError, match="upsample"):
        DlibDetector(upsample=-1)
    with pytest.raises(ValueError, match="RGB uint8"):
        DlibDetector().detect(np.zeros((10, 10), np.uint8))
    with pytest.raises(ValueError, match=r"\(68, 2\)"):
        landmarks_to_shape(np.zeros((5, 2)))


def test_landmarks_inside_the_box(analysed) -> None:
    for rel, (box, lms, _) in analysed.items():
        assert lms.shape == (68, 2) and lms.dtype == np.float64, rel
        cx, cy = lms.mean(axis=0)
        assert box.left < cx < box.right and box.top < cy < box.bottom, rel
        margin = 0.35 * box.size  # dlib's box is tight: the chin may fall ~30% of the box below it
        assert np.all(lms[:, 0] > box.left - margin) and np.all(lms[:, 0] < box.right + margin), rel
        assert np.all(lms[:, 1] > box.top - margin) and np.all(lms[:, 1] < box.bottom + margin), rel
        # Anatomy: the left-eye points (36-41) are left of the right-eye points, the mouth below the eyes.
        assert lms[36:42, 0].mean() < lms[42:48, 0].mean(), rel
        assert lms[48:68, 1].mean() > lms[36:48, 1].mean(), rel


def test_embeddings_are_unit_float32(analysed) -> None:
    for _, _, emb in analysed.values():
        assert emb.shape == (128,) and emb.dtype == np.float32
        assert abs(float(np.linalg.norm(emb)) - 1.0) < 1e-5


def test_same_person_close_different_people_far(analysed) -> None:
    def dist(a: str, b: str) -> float:
        return float(np.linalg.norm(analysed[a][2] - analysed[b][2]))

    same = [
        dist("barack_obama/1.jpg", "barack_obama/2.jpg"),
        dist("barack_obama/1.jpg", "barack_obama/3.jpg"),
    ]
    different = [
        dist("barack_obama/1.jpg", other)
        for other in ("joe_biden/1.jpg", "_distractors/mike_pence.jpg", "_distractors/kamala_harris.jpg")
    ]
    # Unit-normalised dlib embeddings: dlib's own 0.6 threshold on its raw descriptors (norm ~1.4 here)
    # corresponds to ~0.43; same-person pairs sit well below it, different people well above.
    assert max(same) < 0.4, same
    assert min(different) > 0.5, different


def test_embedding_accepts_landmarks_from_any_source(analysed, embedder) -> None:
    image = photo("barack_obama/1.jpg")
    _, lms, emb = analysed["barack_obama/1.jpg"]
    jittered = lms + np.random.default_rng(0).normal(0.0, 0.7, lms.shape)  # sub-pixel, non-integer
    emb2 = embedder.embed(image, jittered)
    assert float(np.linalg.norm(emb - emb2)) < 0.1


def test_objects_pickle_without_their_models(detector, landmarker, embedder, analysed) -> None:
    for obj in (detector, landmarker, embedder):
        assert obj._model is not None  # loaded by the tests above
        clone = pickle.loads(pickle.dumps(obj))
        assert clone._model is None
    clone = pickle.loads(pickle.dumps(landmarker))
    image = photo("barack_obama/2.jpg")
    box, lms, _ = analysed["barack_obama/2.jpg"]
    np.testing.assert_array_equal(clone.landmarks(image, box), lms)


def test_missing_explicit_weights_is_a_clear_error(tmp_path: Path) -> None:
    lm = DlibLandmarker(weights_path=tmp_path / "sp68.dat")
    with pytest.raises(WeightsNotFoundError, match="shape_predictor_68_face_landmarks.dat"):
        lm.landmarks(np.zeros((64, 64, 3), np.uint8), FaceBox(0, 0, 64, 64))
