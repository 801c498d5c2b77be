"""FFHQ-style alignment: the rule on synthetic landmarks, invariants on fixture faces and photos."""

from __future__ import annotations

import math

import numpy as np
import pytest

from celebref.images import read_image
from faces.align import (
    AlignedFace,
    align_face,
    alignment_quad,
    invert_affine,
    paste_back,
    transform_points,
)
from faces.dlib_backend import DlibDetector, DlibLandmarker
from tests.paths import DEMO_FACES, DMDNET_FIXTURE

DEMO = DEMO_FACES
FIXTURE = DMDNET_FIXTURE
FIXTURE_FACES = ("hq", "refs/ref_0", "refs/ref_1", "refs/ref_2")


def synthetic_landmarks(eye_l, eye_r, mouth_l, mouth_r) -> np.ndarray:
    """68 points whose eye-centre / mouth-corner features are the given points (others at the origin)."""
    lms = np.zeros((68, 2))
    lms[36:42] = eye_l
    lms[42:48] = eye_r
    lms[48] = mouth_l
    lms[54] = mouth_r
    return lms


@pytest.fixture(scope="module")
def dlib_models() -> tuple[DlibDetector, DlibLandmarker]:
    return DlibDetector(upsample=1), DlibLandmarker()


def test_quad_follows_the_rule_on_an_upright_face() -> None:
    # Eyes 100 px apart at y=200, mouth corners 90 px below the eye midpoint.
    lms = synthetic_landmarks((250, 200), (350, 200), (270, 290), (330, 290))
    quad = alignment_quad(lms)
    # e2e = (100, 0), e2m = (0, 90): x = (100 + 90, 0) normalised, scaled by max(200, 162) = 200.
    # centre = (300, 200 + 9) = (300, 209); quad = centre -x-y, -x+y, +x+y, +x-y with y = (0, 200).
    expected = np.array([[100, 9], [100, 409], [500, 409], [500, 9]], dtype=float)
    np.testing.assert_allclose(quad, expected, atol=1e-9)


def test_quad_rotates_with_the_face() -> None:
    base = synthetic_landmarks((250, 200), (350, 200), (270, 290), (330, 290))
    angle = math.radians(20)
    rot = np.array([[math.cos(angle), -math.sin(angle)], [math.sin(angle), math.cos(angle)]])
    centre = np.array([300.0, 250.0])
    turned = (base - centre) @ rot.T + centre
    turned[np.all(base == 0, axis=1)] = 0  # keep unused points as they were
    np.testing.assert_allclose(
        alignment_quad(turned), (alignment_quad(base) - centre) @ rot.T + centre, atol=1e-9
    )


def test_alignment_maps_quad_corners_to_output_corners() -> None:
    rng = np.random.default_rng(1)
    image = rng.integers(0, 256, (600, 700, 3), dtype=np.uint8)
    lms = synthetic_landmarks((300, 250), (390, 262), (315, 340), (370, 348))
    face = align_face(image, lms, output_size=256)
    assert isinstance(face, AlignedFace)
    assert face.image.shape == (256, 256, 3) and face.image.dtype == np.uint8
    assert face.matrix.shape == (2, 3) and face.matrix.dtype == np.float64
    corners = transform_points(face.quad, face.matrix)
    np.testing.assert_allclose(corners, [[0, 0], [0, 256], [256, 256], [256, 0]], atol=1e-6)
    # Pixel check: the aligned pixel equals bilinear sampling of the source at the inverse-mapped point.
    inv = invert_affine(face.matrix)
    for ax, ay in ((10, 20), (128, 128), (200, 37)):
        sx, sy = transform_points(np.array([[ax, ay]], float), inv)[0]
        x0, y0 = int(math.floor(sx)), int(math.floor(sy))
        fx, fy = sx - x0, sy - y0
        patch = image[y0 : y0 + 2, x0 : x0 + 2].astype(float)
        want = (
            patch[0, 0] * (1 - fx) * (1 - fy)
            + patch[0, 1] * fx * (1 - fy)
            + patch[1, 0] * (1 - fx) * fy
            + patch[1, 1] * fx * fy
        )
        assert np.all(np.abs(face.image[ay, ax].astype(float) - want) <= 1.5)


def test_preshrink_triggers_for_large_faces_and_keeps_the_matrix_exact() -> None:
    rng = np.random.default_rng(2)
    image = np.repeat(np.repeat(rng.integers(0, 256, (120, 120, 3), dtype=np.uint8), 8, 0), 8, 1)  # 960²
    lms = synthetic_landmarks((380, 400), (580, 400), (420, 580), (540, 580))
    quad = alignment_quad(lms)
    qsize = float(np.hypot(*(quad[2] - quad[1])))
    assert math.floor(qsize / 64 * 0.5) > 1  # shrink applies for a 64 px output
    shrunk = align_face(image, lms, output_size=64)
    plain = align_face(image, lms, output_size=64, preshrink=False)
    # Same geometry either way; the pre-shrunk version is the less aliased one.
    corners = transform_points(quad[:3], shrunk.matrix)
    np.testing.assert_allclose(corners, [[0, 0], [0, 64], [64, 64]], atol=1e-6)
    np.testing.assert_allclose(shrunk.matrix, plain.matrix, atol=1e-9)
    assert np.abs(shrunk.image.astype(int) - plain.image.astype(int)).mean() < 40


def test_reflect_border_fills_outside_the_photo() -> None:
    image = np.zeros((200, 200, 3), np.uint8)
    image[:, :100] = 255  # left half white
    # Face near the left edge: the quad leaves the photo, where the reflected border repeats white.
    lms = synthetic_landmarks((20, 100), (60, 100), (28, 140), (52, 140))
    face = align_face(image, lms, output_size=64)
    assert face.image[:, :8].min() == 255


@pytest.mark.parametrize("name", FIXTURE_FACES)
def test_realigning_an_aligned_fixture_face_is_near_identity(name: str) -> None:
    image = read_image(FIXTURE / f"{name}.png")
    lms = np.loadtxt(FIXTURE / f"{name}_landmarks.txt")
    face = align_face(image, lms)
    linear = face.matrix[:, :2]
    scale = math.sqrt(abs(np.linalg.det(linear)))
    angle = math.degrees(math.atan2(linear[1, 0], linear[0, 0]))
    # The stored landmarks were re-detected on the aligned image, so they carry ~1 px of noise:
    # the re-alignment is identity up to a couple of % in scale, ~2 degrees and ~15 px.
    assert abs(scale - 1.0) < 0.03, scale
    assert abs(angle) < 2.5, angle
    assert np.abs(face.matrix[:, 2]).max() < 15, face.matrix
    diff = np.abs(face.image.astype(int) - image.astype(int)).mean()
    # A 10-degree rotation of the same image differs far more than the near-identity re-alignment.
    rotated = align_face(image, (lms - 256) @ _rot(10).T + 256)
    assert diff < 15 and diff < 0.6 * np.abs(rotated.image.astype(int) - image.astype(int)).mean()


def _rot(degrees: float) -> np.ndarray:
    a = math.radians(degrees)
    return np.array([[math.cos(a), -math.sin(a)], [math.sin(a), math.cos(a)]])


@pytest.mark.parametrize("rel", ["barack_obama/1.jpg", "barack_obama/2.jpg"])
def test_transformed_landmarks_land_where_the_detector_finds_them(rel: str, dlib_models) -> None:
    detector, landmarker = dlib_models
    image = read_image(DEMO / rel)
    lms = landmarker.landmarks(image, detector.detect(image)[0])
    face = align_face(image, lms)
    boxes = detector.detect(face.image)
    assert len(boxes) == 1
    redetected = landmarker.landmarks(face.image, boxes[0])
    err = np.linalg.norm(transform_points(lms, face.matrix) - redetected, axis=1)
    assert err.mean() < 3.0 and np.median(err) < 2.5, (err.mean(), np.median(err))
    eye_err = np.linalg.norm(transform_points(lms[36:48], face.matrix).mean(0) - redetected[36:48].mean(0))
    assert eye_err < 1.5


def test_paste_back_roundtrip_and_replacement(dlib_models) -> None:
    detector, landmarker = dlib_models
    image = read_image(DEMO / "barack_obama/2.jpg")
    lms = landmarker.landmarks(image, detector.detect(image)[0])
    face = align_face(image, lms)

    # Pasting the unmodified crop back changes little (only resampling blur inside the face).
    same = paste_back(image, face.image, face.matrix)
    assert same.shape == image.shape and same.dtype == np.uint8
    assert np.abs(same.astype(int) - image.astype(int)).mean() < 3

    # Pasting a black crop darkens the face centre fully, and leaves pixels far outside the quad intact.
    black = paste_back(image, np.zeros_like(face.image), face.matrix, feather=0.1)
    cx, cy = np.rint(lms[27:36].mean(axis=0)).astype(int)  # nose
    assert black[cy, cx].max() == 0
    xs, ys = face.quad[:, 0], face.quad[:, 1]
    outside = np.ones(image.shape[:2], bool)
    outside[max(0, int(ys.min()) - 2) : int(ys.max()) + 3, max(0, int(xs.min()) - 2) : int(xs.max()) + 3] = (
        False
    )
    np.testing.assert_array_equal(black[outside], image[outside])

    # The feathered border blends: just inside the quad edge, pixels are between black and the original.
    hard = paste_back(image, np.zeros_like(face.image), face.matrix, feather=0.0)
    assert hard.astype(int).sum() < black.astype(int).sum()


def test_bad_inputs() -> None:
    image = np.zeros((64, 64, 3), np.uint8)
    with pytest.raises(ValueError, match=r"\(68, 2\)"):
        align_face(image, np.zeros((5, 2)))
    with pytest.raises(ValueError, match="RGB uint8"):
        align_face(image.astype(np.float32), np.zeros((68, 2)))
    with pytest.raises(ValueError, match="degenerate"):
        alignment_quad(np.zeros((68, 2)))
    with pytest.raises(ValueError, match="feather"):
        paste_back(image, image, np.eye(2, 3), feather=0.9)
    with pytest.raises(ValueError, match=r"\(2, 3\)"):
        transform_points(np.zeros((3, 2)), np.eye(3))
