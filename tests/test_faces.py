"""Face-analysis configuration/registry, and the ArcFace / FAN adapters with stand-in models.

insightface and face-alignment (and their weights) are optional and not installed here: the adapters'
plumbing is checked with small injected stand-ins that record what they are given.
"""

from __future__ import annotations

import math
import sys
import types
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from celebref.config import load_section
from celebref.images import read_image
from faces.analysis import FaceAnalyzer, FaceAnalyzerConfig, build_face_analyzer
from faces.dlib_backend import DlibDetector, DlibEmbedder, DlibLandmarker
from faces.fan_backend import FanLandmarker
from faces.insightface_backend import (
    ARCFACE_TEMPLATE_112,
    ArcFaceEmbedder,
    arcface_crop,
    five_points_from_68,
    similarity_transform,
)
from faces.types import Detector, FaceBox, IdentityEmbedder, Landmarker
from faces.weights import WeightsNotFoundError
from tests.paths import DEMO_FACES

DEMO = DEMO_FACES


# ----------------------------------------------------------------------------------------------------
# Configuration and registry
# ----------------------------------------------------------------------------------------------------


def test_default_analyzer_is_offline_dlib() -> None:
    analyzer = build_face_analyzer(FaceAnalyzerConfig())
    assert isinstance(analyzer, FaceAnalyzer)
    assert isinstance(analyzer.detector, DlibDetector) and analyzer.detector.kind == "hog"
    assert isinstance(analyzer.landmarker, DlibLandmarker)
    assert isinstance(analyzer.embedder, DlibEmbedder)
    assert analyzer.names() == {"detector": "dlib_hog", "landmarker": "dlib", "embedder": "dlib"}
    assert isinstance(analyzer.detector, Detector)
    assert isinstance(analyzer.landmarker, Landmarker)
    assert isinstance(analyzer.embedder, IdentityEmbedder)
    with pytest.raises(AttributeError):
        analyzer.detector = None  # type: ignore[misc]  # frozen bundle


@pytest.mark.parametrize(
    ("field", "value", "allowed"),
    [
        ("detector", "retina", "cnn, hog"),
        ("landmarker", "hrnet", "dlib, fan"),
        ("embedder", "vgg", "arcface, dlib"),
    ],
)
def test_unknown_backend_names_are_rejected(field: str, value: str, allowed: str) -> None:
    with pytest.raises(ValueError, match=f"allowed: {allowed}"):
        FaceAnalyzerConfig(**{field: value})


def test_config_is_strict_and_frozen() -> None:
    with pytest.raises(ValueError):
        FaceAnalyzerConfig(detecter="hog")  # typo: unknown key
    with pytest.raises(ValueError):
        FaceAnalyzerConfig(upsample=-1)
    cfg = FaceAnalyzerConfig()
    with pytest.raises(ValueError):
        cfg.detector = "cnn"  # type: ignore[misc]


def test_optional_backends_build_without_importing_their_packages() -> None:
    analyzer = build_face_analyzer(FaceAnalyzerConfig(detector="cnn", landmarker="fan", embedder="arcface"))
    assert isinstance(analyzer.landmarker, FanLandmarker)
    assert isinstance(analyzer.embedder, ArcFaceEmbedder)
    assert analyzer.names() == {"detector": "dlib_cnn", "landmarker": "fan", "embedder": "arcface"}
    assert "face_alignment" not in sys.modules and "insightface" not in sys.modules


def test_config_from_params_file_passes_weights_settings(tmp_path: Path) -> None:
    params = tmp_path / "params.yaml"
    missing = tmp_path / "nowhere" / "sp68.dat"
    params.write_text(
        yaml.safe_dump({"faces": {"detector": "hog", "upsample": 0, "landmarker_weights": str(missing)}})
    )
    cfg = load_section(FaceAnalyzerConfig, "faces", params)
    analyzer = build_face_analyzer(cfg)
    assert analyzer.detector.upsample == 0
    with pytest.raises(WeightsNotFoundError, match="sp68.dat"):
        analyzer.landmarker.landmarks(np.zeros((64, 64, 3), np.uint8), FaceBox(0, 0, 64, 64))


def test_cnn_detector_finds_the_face() -> None:
    detector = build_face_analyzer(FaceAnalyzerConfig(detector="cnn", upsample=0, max_side=640)).detector
    image = read_image(DEMO / "barack_obama/2.jpg")
    boxes = detector.detect(image)
    hog = DlibDetector(upsample=1).detect(image)
    assert len(boxes) == 1 and len(hog) == 1
    # Same face as HOG finds: box centres within a quarter of the face size.
    cx, cy = (boxes[0].left + boxes[0].right) / 2, (boxes[0].top + boxes[0].bottom) / 2
    hx, hy = (hog[0].left + hog[0].right) / 2, (hog[0].top + hog[0].bottom) / 2
    assert math.hypot(cx - hx, cy - hy) < 0.25 * hog[0].size
    assert 0.0 < boxes[0].score <= 1.5


# ----------------------------------------------------------------------------------------------------
# ArcFace adapter
# ----------------------------------------------------------------------------------------------------

# Five marker colours (RGB) for left eye, right eye, nose tip, left and right mouth corner.
MARKERS = np.array([[255, 0, 0], [0, 255, 0], [0, 0, 255], [255, 255, 0], [0, 255, 255]], dtype=np.uint8)


def _landmarks_with_five_points(points5: np.ndarray) -> np.ndarray:
    lms = np.zeros((68, 2))
    lms[36:42] = points5[0]
    lms[42:48] = points5[1]
    lms[30] = points5[2]
    lms[48] = points5[3]
    lms[54] = points5[4]
    return lms


def _marked_face(scale: float, angle_deg: float, shift: tuple[float, float]) -> tuple[np.ndarray, np.ndarray]:
    """A grey photo with coloured dots where the ArcFace template points land under a similarity map."""
    a = math.radians(angle_deg)
    rot = scale * np.array([[math.cos(a), -math.sin(a)], [math.sin(a), math.cos(a)]])
    points5 = ARCFACE_TEMPLATE_112 @ rot.T + np.asarray(shift)
    image = np.full((400, 500, 3), 90, np.uint8)
    for colour, (x, y) in zip(MARKERS, points5, strict=True):
        xi, yi = int(round(x)), int(round(y))
        image[yi - 4 : yi + 5, xi - 4 : xi + 5] = colour
    return image, _landmarks_with_five_points(points5)


class RecordingArcFace:
    """Stand-in for insightface's recognition model: records its inputs, returns a fixed 512-D vector."""

    def __init__(self) -> None:
        self.inputs: list[np.ndarray] = []
        self.output = np.linspace(-3.0, 5.0, 512, dtype=np.float32)[None]

    def get_feat(self, imgs):
        self.inputs.extend(imgs)
        return self.output


def test_similarity_transform_recovers_a_known_map() -> None:
    rng = np.random.default_rng(0)
    src = rng.uniform(0, 100, (5, 2))
    a = math.radians(-33)
    true = np.array(
        [[1.7 * math.cos(a), -1.7 * math.sin(a), 12.0], [1.7 * math.sin(a), 1.7 * math.cos(a), -4.0]]
    )
    dst = src @ true[:, :2].T + true[:, 2]
    np.testing.assert_allclose(similarity_transform(src, dst), true, atol=1e-9)
    # A mirrored target is fitted without reflection (determinant stays positive).
    mirrored = dst * np.array([-1.0, 1.0])
    assert np.linalg.det(similarity_transform(src, mirrored)[:, :2]) > 0


def test_five_points_from_68() -> None:
    lms = np.arange(136, dtype=float).reshape(68, 2)
    five = five_points_from_68(lms)
    np.testing.assert_allclose(five[0], lms[36:42].mean(0))
    np.testing.assert_allclose(five[1], lms[42:48].mean(0))
    np.testing.assert_allclose(five[2:], lms[[30, 48, 54]])


def test_arcface_crop_puts_landmarks_on_the_template() -> None:
    image, lms = _marked_face(scale=2.3, angle_deg=12.0, shift=(150.0, 60.0))
    crop, matrix = arcface_crop(image, lms)
    assert crop.shape == (112, 112, 3) and crop.dtype == np.uint8
    for colour, (x, y) in zip(MARKERS, ARCFACE_TEMPLATE_112, strict=True):
        np.testing.assert_array_equal(crop[int(round(y)), int(round(x))], colour)
    assert abs(math.sqrt(np.linalg.det(matrix[:, :2])) - 1 / 2.3) < 1e-9


def test_arcface_embedder_feeds_bgr_crop_and_normalises() -> None:
    image, lms = _marked_face(scale=1.8, angle_deg=-7.0, shift=(200.0, 100.0))
    fake = RecordingArcFace()
    embedder = ArcFaceEmbedder(model=fake)
    emb = embedder.embed(image, lms)
    assert embedder.name == "arcface" and isinstance(embedder, IdentityEmbedder)
    assert emb.shape == (512,) and emb.dtype == np.float32
    assert abs(float(np.linalg.norm(emb)) - 1.0) < 1e-6
    np.testing.assert_allclose(emb, fake.output[0] / np.linalg.norm(fake.output[0]), rtol=1e-6)
    (given,) = fake.inputs
    assert given.shape == (112, 112, 3) and given.dtype == np.uint8 and given.flags["C_CONTIGUOUS"]
    # BGR: the red left-eye marker arrives as (0, 0, 255) at the template's left-eye position.
    lx, ly = np.rint(ARCFACE_TEMPLATE_112[0]).astype(int)
    np.testing.assert_array_equal(given[ly, lx], [0, 0, 255])
    np.testing.assert_array_equal(given, arcface_crop(image, lms)[0][:, :, ::-1])


def test_arcface_rejects_bad_model_output() -> None:
    image, lms = _marked_face(scale=1.5, angle_deg=0.0, shift=(150.0, 100.0))
    fake = RecordingArcFace()
    fake.output = np.zeros((1, 512), np.float32)
    with pytest.raises(ValueError, match="zero or non-finite"):
        ArcFaceEmbedder(model=fake).embed(image, lms)


def test_arcface_without_insightface_names_the_extra(monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "insightface", None)  # import fails as if not installed
    image, lms = _marked_face(scale=1.5, angle_deg=0.0, shift=(150.0, 100.0))
    with pytest.raises(ImportError, match=r"celebref-hq\[arcface\]"):
        ArcFaceEmbedder().embed(image, lms)


def _fake_insightface(monkeypatch) -> list[tuple]:
    calls: list[tuple] = []

    class Model(RecordingArcFace):
        def prepare(self, ctx_id: int) -> None:
            calls.append(("prepare", ctx_id))

    def get_model(path: str, providers: list[str]):
        calls.append(("get_model", path, tuple(providers)))
        return Model()

    pkg = types.ModuleType("insightface")
    pkg.model_zoo = types.SimpleNamespace(get_model=get_model)
    monkeypatch.setitem(sys.modules, "insightface", pkg)
    return calls


def test_arcface_missing_weights_and_loading(monkeypatch, tmp_path: Path) -> None:
    calls = _fake_insightface(monkeypatch)
    image, lms = _marked_face(scale=1.5, angle_deg=0.0, shift=(150.0, 100.0))
    with pytest.raises(WeightsNotFoundError) as info:
        ArcFaceEmbedder(cache_dir=tmp_path / "cache").embed(image, lms)
    msg = str(info.value)
    assert "w600k_r50.onnx" in msg and "buffalo_l.zip" in msg and str(tmp_path / "cache") in msg
    assert calls == []

    onnx = tmp_path / "w600k_r50.onnx"
    onnx.write_bytes(b"onnx stand-in")
    emb = ArcFaceEmbedder(weights_path=onnx).embed(image, lms)
    assert calls == [("get_model", str(onnx), ("CPUExecutionProvider",)), ("prepare", -1)]
    assert emb.shape == (512,)


# ----------------------------------------------------------------------------------------------------
# FAN adapter
# ----------------------------------------------------------------------------------------------------


class RecordingFan:
    """Stand-in for face_alignment.FaceAlignment: records calls, returns recorded (68, 3) predictions."""

    def __init__(self, prediction: np.ndarray | None) -> None:
        self.prediction = prediction
        self.calls: list[tuple[np.ndarray, list[np.ndarray]]] = []

    def get_landmarks_from_image(self, image, detected_faces=None):
        self.calls.append((image, detected_faces))
        return None if self.prediction is None else [self.prediction]


def test_fan_adapter_passes_rgb_and_box_and_returns_68x2() -> None:
    rng = np.random.default_rng(3)
    recorded = np.hstack([rng.uniform(100, 300, (68, 2)), rng.normal(0, 10, (68, 1))]).astype(np.float32)
    fake = RecordingFan(recorded)
    landmarker = FanLandmarker(model=fake)
    image = rng.integers(0, 256, (360, 420, 3), dtype=np.uint8)
    box = FaceBox(110.0, 95.0, 290.0, 300.0)
    pts = landmarker.landmarks(image, box)
    assert landmarker.name == "fan" and isinstance(landmarker, Landmarker)
    assert pts.shape == (68, 2) and pts.dtype == np.float64
    np.testing.assert_allclose(pts, recorded[:, :2].astype(np.float64))
    ((given, faces),) = fake.calls
    np.testing.assert_array_equal(given, image)  # RGB, unchanged (face-alignment expects RGB)
    assert len(faces) == 1
    np.testing.assert_allclose(faces[0], [110.0, 95.0, 290.0, 300.0])


def test_fan_adapter_errors() -> None:
    image = np.zeros((64, 64, 3), np.uint8)
    with pytest.raises(ValueError, match="no landmarks"):
        FanLandmarker(model=RecordingFan(None)).landmarks(image, FaceBox(0, 0, 64, 64))
    with pytest.raises(ValueError, match=r"\(68, 2\)"):
        FanLandmarker(model=RecordingFan(np.zeros((5, 2)))).landmarks(image, FaceBox(0, 0, 64, 64))


def test_fan_without_face_alignment_names_the_extra(monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "face_alignment", None)
    with pytest.raises(ImportError, match=r"celebref-hq\[fan\]"):
        FanLandmarker().landmarks(np.zeros((64, 64, 3), np.uint8), FaceBox(0, 0, 64, 64))


def test_fan_missing_weights_and_loading(monkeypatch, tmp_path: Path) -> None:
    built: list[tuple] = []

    class FaceAlignment(RecordingFan):
        def __init__(self, landmarks_type, device, flip_input, face_detector):
            super().__init__(np.zeros((68, 2)))
            built.append((landmarks_type, device, flip_input, face_detector))

    version = ".".join(torch.__version__.split("+")[0].split(".")[:2])
    api = types.ModuleType("face_alignment.api")
    api.models_urls = {version: {"2DFAN-4": "https://example.org/python-fan/2DFAN4_test-0123456789.zip"}}
    pkg = types.ModuleType("face_alignment")
    pkg.api = api
    pkg.LandmarksType = types.SimpleNamespace(TWO_D="2d")
    pkg.FaceAlignment = FaceAlignment
    monkeypatch.setitem(sys.modules, "face_alignment", pkg)
    monkeypatch.setitem(sys.modules, "face_alignment.api", api)

    image = np.zeros((64, 64, 3), np.uint8)
    with pytest.raises(WeightsNotFoundError) as info:
        FanLandmarker(cache_dir=tmp_path / "cache").landmarks(image, FaceBox(0, 0, 64, 64))
    assert "2DFAN4-cd938726ad.zip" in str(info.value) and "adrianbulat.com" in str(info.value)
    assert built == []

    weights = tmp_path / "cache" / "2DFAN4-cd938726ad.zip"
    weights.parent.mkdir()
    weights.write_bytes(b"torchscript stand-in")
    old_hub = torch.hub.get_dir()
    torch.hub.set_dir(str(tmp_path / "hub"))
    try:
        pts = FanLandmarker(cache_dir=tmp_path / "cache").landmarks(image, FaceBox(0, 0, 64, 64))
    finally:
        torch.hub.set_dir(old_hub)
    assert pts.shape == (68, 2)
    assert built == [("2d", "cpu", False, "dlib")]
    linked = tmp_path / "hub" / "checkpoints" / "2DFAN4_test-0123456789.zip"
    assert linked.read_bytes() == b"torchscript stand-in"
