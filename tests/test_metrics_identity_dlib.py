"""Id(dlib) on real public-domain photos: aligned faces, ground-truth landmarks used for both images."""

from __future__ import annotations

import numpy as np
import pytest

from benchmark.metrics.identity import identity_similarity
from benchmark.metrics.registry import build_metric
from celebref.images import read_image
from degrade.model import DegradationParams, apply
from degrade.ops import to_uint8, upsample_to
from faces.align import align_face, transform_points
from faces.dlib_backend import DlibDetector, DlibLandmarker
from tests.paths import DEMO_FACES

DEMO = DEMO_FACES


@pytest.fixture(scope="module")
def aligned() -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """512×512 aligned face and its 68 landmarks for one photo of two different people."""
    detector, landmarker = DlibDetector(model="hog", upsample=1), DlibLandmarker()
    out = {}
    for rel in ("barack_obama/1.jpg", "joe_biden/1.jpg"):
        photo = read_image(DEMO / rel)
        points = landmarker.landmarks(photo, detector.detect(photo)[0])
        face = align_face(photo, points)
        out[rel.split("/")[0]] = (face.image, transform_points(points, face.matrix))
    return out


def _degraded(image: np.ndarray, scale: float) -> np.ndarray:
    params = DegradationParams(sigma_blur=2.0, scale=scale, sigma_noise=5.0, jpeg_quality=70, seed=0)
    return to_uint8(upsample_to(apply(image, params), 512))


def test_id_dlib_on_real_faces(aligned: dict[str, tuple[np.ndarray, np.ndarray]]) -> None:
    metric = build_metric("id")
    assert metric.name == "Id(dlib)" and metric.higher_is_better
    gt, landmarks = aligned["barack_obama"]
    other, _ = aligned["joe_biden"]
    x4, x16 = _degraded(gt, 4.0), _degraded(gt, 16.0)
    metric.update(["same", "x4", "x16", "other"], [gt, x4, x16, other], [gt] * 4, landmarks=[landmarks] * 4)
    s = metric.compute().per_image
    assert s["same"] == pytest.approx(1.0, abs=1e-6)
    # dlib's unit-normalised same-person distance <= ~0.43, i.e. cosine >= ~0.91; other people fall below
    assert s["x4"] > 0.95 and s["x4"] > s["x16"] > s["other"]
    assert s["other"] < 0.9
    embedder = metric.embedder  # type: ignore[attr-defined]
    assert identity_similarity(gt, x4, landmarks=landmarks, embedder=embedder) == pytest.approx(
        s["x4"], abs=1e-6
    )
