"""dlib backend: HOG / CNN-mmod face detector, 68-point shape predictor, ResNet 128-D identity embedder.

Works offline: the model files ship in the ``face-recognition-models`` wheel (found through
:mod:`faces.weights`, which also honours explicit paths and the weights cache directory).

Conventions: images are RGB ``uint8`` ``(H, W, 3)``; points are float64 ``(x, y)`` pixels as dlib
returns them (whole numbers, integer = pixel index). Each model loads lazily, once per object; the
loaded model is not pickled, so these objects can be sent to worker processes.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from faces._lazy import LazyModel
from faces.types import FaceBox, shrink
from faces.weights import DLIB_LANDMARKS_68, DLIB_MMOD_DETECTOR, DLIB_RESNET_EMBEDDER

__all__ = ["DlibDetector", "DlibLandmarker", "DlibEmbedder", "DETECTOR_MODELS", "check_rgb_uint8"]

DETECTOR_MODELS = ("hog", "cnn")


def check_rgb_uint8(image: np.ndarray) -> np.ndarray:
    """Return ``image`` as a C-contiguous RGB ``uint8`` ``(H, W, 3)`` array or raise ``ValueError``."""
    if not isinstance(image, np.ndarray) or image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        shape = getattr(image, "shape", None)
        dtype = getattr(image, "dtype", type(image).__name__)
        raise ValueError(f"expected an RGB uint8 (H, W, 3) array, got {dtype} {shape}")
    return np.ascontiguousarray(image)


class DlibDetector(LazyModel):
    """dlib face detector.

    Args:
        model: ``"hog"`` (frontal HOG + linear SVM, default) or ``"cnn"`` (max-margin CNN, mmod weights).
        upsample: how many times dlib doubles the image before detecting (finds smaller faces, slower).
        max_side: when set, images whose longer side exceeds it are downscaled (area) before detection and
            the boxes scaled back; ``None`` (default) detects at full resolution.
        weights_path, cache_dir, allow_download: where the CNN weights come from (see
            :func:`faces.weights.resolve_weights`); unused for HOG.
    """

    def __init__(
        self,
        *,
        model: str = "hog",
        upsample: int = 1,
        max_side: int | None = None,
        weights_path: str | Path | None = None,
        cache_dir: str | Path | None = None,
        allow_download: bool = False,
    ) -> None:
        if model not in DETECTOR_MODELS:
            raise ValueError(f"unknown dlib detector model {model!r}; allowed: {', '.join(DETECTOR_MODELS)}")
        if not isinstance(upsample, int) or upsample < 0:
            raise ValueError(f"upsample must be an integer >= 0, got {upsample!r}")
        if max_side is not None and max_side < 32:
            raise ValueError(f"max_side must be >= 32 or None, got {max_side!r}")
        super().__init__(
            DLIB_MMOD_DETECTOR if model == "cnn" else None, weights_path, cache_dir, allow_download
        )
        self.kind = model
        self.upsample = upsample
        self.max_side = max_side
        self.name = f"dlib_{model}"

    @property
    def min_box(self) -> float:
        """Side of the smallest face box found: both dlib detectors scan an 80-pixel window over an image
        doubled ``upsample`` times (at full resolution; ``max_side`` shrinking comes on top)."""
        return 80.0 / 2**self.upsample

    def _load(self) -> Any:
        import dlib

        if self.kind == "cnn":
            return dlib.cnn_face_detection_model_v1(str(self.resolve()))
        return dlib.get_frontal_face_detector()

    def detect(self, image: np.ndarray) -> list[FaceBox]:
        """All faces in RGB uint8 ``image``, largest first.

        Box edges follow dlib's rectangle: ``left``/``top`` are the first pixel inside, ``right``/``bottom``
        one past the last (so ``width`` equals dlib's ``width()``). Scores: HOG SVM margin, or CNN confidence.
        """
        image = check_rgb_uint8(image)
        factor = 1.0 if self.max_side is None else self.max_side / max(image.shape[:2])
        image, sx, sy = shrink(image, factor)
        boxes: list[FaceBox] = []
        if self.kind == "cnn":
            for det in self.model(image, self.upsample):
                boxes.append(_to_box(det.rect, float(det.confidence), sx, sy))
        else:
            rects, scores, _ = self.model.run(image, self.upsample, 0.0)
            for rect, score in zip(rects, scores, strict=True):
                boxes.append(_to_box(rect, float(score), sx, sy))
        boxes.sort(key=lambda b: b.area, reverse=True)
        return boxes


def _to_box(rect: Any, score: float, sx: float, sy: float) -> FaceBox:
    """A :class:`FaceBox` from a dlib rectangle found on an image shrunk by ``(1/sx, 1/sy)``."""
    return FaceBox(
        left=rect.left() * sx,
        top=rect.top() * sy,
        right=(rect.right() + 1) * sx,
        bottom=(rect.bottom() + 1) * sy,
        score=score,
    )


def _box_to_rect(box: FaceBox) -> Any:
    import dlib

    return dlib.rectangle(
        int(round(box.left)), int(round(box.top)), int(round(box.right)) - 1, int(round(box.bottom)) - 1
    )


class DlibLandmarker(LazyModel):
    """dlib's 68-point shape predictor (iBUG 300-W layout, trained on dlib HOG boxes)."""

    name = "dlib"

    def __init__(
        self,
        *,
        weights_path: str | Path | None = None,
        cache_dir: str | Path | None = None,
        allow_download: bool = False,
    ) -> None:
        super().__init__(DLIB_LANDMARKS_68, weights_path, cache_dir, allow_download)

    def _load(self) -> Any:
        import dlib

        return dlib.shape_predictor(str(self.resolve()))

    def landmarks(self, image: np.ndarray, box: FaceBox) -> np.ndarray:
        """68 points, float64 ``(68, 2)`` of ``(x, y)`` pixels, for the face in ``box`` of RGB ``image``."""
        image = check_rgb_uint8(image)
        shape = self.model(image, _box_to_rect(box))
        if shape.num_parts != 68:
            raise ValueError(f"shape predictor returned {shape.num_parts} points, expected 68")
        return np.array([(p.x, p.y) for p in shape.parts()], dtype=np.float64)


class DlibEmbedder(LazyModel):
    """dlib's ResNet face-recognition model: an L2-normalised 128-D float32 embedding.

    The face chip (150×150, padding 0.25) is cut by dlib from the 68 landmarks, whichever landmarker
    produced them. dlib's documented same-person threshold is a Euclidean distance of 0.6 between its raw
    descriptors; those have norm ~1.4 (1.37–1.60 on the demo photos), so it corresponds to ~0.43 on the
    unit-normalised scale returned here. On the demo photos: same person ≤ 0.33, different ≥ 0.40.
    """

    name = "dlib"

    def __init__(
        self,
        *,
        num_jitters: int = 0,
        padding: float = 0.25,
        weights_path: str | Path | None = None,
        cache_dir: str | Path | None = None,
        allow_download: bool = False,
    ) -> None:
        if num_jitters < 0:
            raise ValueError(f"num_jitters must be >= 0, got {num_jitters}")
        if not 0.0 <= padding <= 1.0:
            raise ValueError(f"padding must be in [0, 1], got {padding}")
        super().__init__(DLIB_RESNET_EMBEDDER, weights_path, cache_dir, allow_download)
        self.num_jitters = num_jitters
        self.padding = padding

    def _load(self) -> Any:
        import dlib

        return dlib.face_recognition_model_v1(str(self.resolve()))

    def embed(self, image: np.ndarray, landmarks: np.ndarray) -> np.ndarray:
        """Embedding ``(128,)`` float32, unit L2 norm, of the face given by 68 landmarks in RGB ``image``."""
        image = check_rgb_uint8(image)
        shape = landmarks_to_shape(landmarks)
        vec = np.asarray(
            self.model.compute_face_descriptor(image, shape, self.num_jitters, self.padding), dtype=np.float64
        )
        norm = float(np.linalg.norm(vec))
        if not np.isfinite(norm) or norm <= 0.0:
            raise ValueError("dlib returned a zero or non-finite face descriptor")
        return (vec / norm).astype(np.float32)


def landmarks_to_shape(landmarks: np.ndarray) -> Any:
    """A dlib ``full_object_detection`` from float ``(68, 2)`` landmarks (rounded to whole pixels).

    Its rectangle is the landmarks' bounding box; dlib's face-chip extraction only uses the points.
    """
    import dlib

    pts = np.asarray(landmarks, dtype=np.float64)
    if pts.shape != (68, 2) or not np.all(np.isfinite(pts)):
        raise ValueError(f"expected finite (68, 2) landmarks, got shape {pts.shape}")
    ipts = np.rint(pts).astype(np.int64)
    left, top = ipts.min(axis=0)
    right, bottom = ipts.max(axis=0)
    rect = dlib.rectangle(int(left), int(top), int(right), int(bottom))
    return dlib.full_object_detection(rect, [dlib.point(int(x), int(y)) for x, y in ipts])
