"""Per-photo face analysis for curation: the pure, per-item part of the stage.

:func:`analyze_photo` finds the usable faces of one raw photo, :func:`align_photo` aligns the chosen one.
Both results convert to JSON-able records (``*_record`` / ``*_from_record``) exactly, floats included, so a
result read back from the analysis cache is the result that was computed.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from celebref.images import ImageDecodeError, read_image
from curate.quality import difference_hash, face_sharpness
from faces.align import align_face, alignment_quad, transform_points
from faces.analysis import FaceAnalyzer
from faces.types import Detector, FaceBox, shrink

__all__ = [
    "Candidate",
    "PhotoAnalysis",
    "AlignedPhoto",
    "analyze_image",
    "analyze_photo",
    "align_image",
    "align_photo",
    "detect_faces",
    "detection_scale",
    "timed",
    "analysis_record",
    "analysis_from_record",
    "aligned_record",
    "aligned_from_record",
]


@dataclass(frozen=True)
class Candidate:
    """One detected face that is large and sharp enough to be the identity's photo."""

    box: FaceBox
    landmarks: np.ndarray  # (68, 2) float64, source-photo pixels
    embedding: np.ndarray  # (D,) float32, L2-normalised
    face_size: float  # side of the FFHQ alignment quad, source pixels
    sharpness: float


@dataclass(frozen=True)
class PhotoAnalysis:
    """Either candidates, or the reason the photo cannot be used (``reason`` set, ``candidates`` empty)."""

    width: int = 0
    height: int = 0
    n_faces: int = 0
    candidates: tuple[Candidate, ...] = ()
    reason: str | None = None
    detail: str = ""


@dataclass(frozen=True)
class AlignedPhoto:
    """The chosen face aligned (``image`` is not kept in the analysis cache: it is stored as a PNG)."""

    image: np.ndarray | None  # (size, size, 3) uint8
    landmarks: np.ndarray | None  # (68, 2) float64, re-detected on the aligned image
    matrix: np.ndarray | None  # (2, 3) source → aligned
    landmark_source: str = ""
    dhash: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=bool))
    reason: str | None = None
    detail: str = ""


def quad_size(landmarks: np.ndarray) -> float:
    """Side length of the FFHQ quad: the source region that alignment maps onto the output square."""
    quad = alignment_quad(landmarks)
    return float(np.linalg.norm(quad[1] - quad[0]))


# dlib face boxes are 0.50-0.71 of the FFHQ quad side on the demo photos; the bound keeps a margin below.
BOX_PER_QUAD = 0.45
# Detect on a copy where the smallest wanted face box is at least this many times the detector's minimum.
DETECTION_MARGIN = 1.25


def detection_scale(min_face: float, detector: Detector) -> float:
    """The factor (<= 1) to shrink a photo by before detection so that no face of quad side ``min_face`` is
    lost: its box, at least ``BOX_PER_QUAD · min_face``, stays ``DETECTION_MARGIN`` times above the
    detector's ``min_box``. Detectors that do not state ``min_box`` run at full resolution."""
    min_box = getattr(detector, "min_box", None)
    if min_box is None:
        return 1.0
    return min(1.0, DETECTION_MARGIN * float(min_box) / (BOX_PER_QUAD * min_face))


def detect_faces(
    image: np.ndarray, detector: Detector, *, min_face: float, scale: float | None = None
) -> list[FaceBox]:
    """Every face in ``image`` (boxes in its pixels, largest first), found on a copy shrunk as far as
    ``min_face`` allows: a 512-pixel quad is still a ~100-pixel box at a quarter of the size.

    ``scale`` overrides :func:`detection_scale` (1.0: detect at full resolution).
    """
    factor = detection_scale(min_face, detector) if scale is None else scale
    small, sx, sy = shrink(image, factor)
    return [box.scaled(sx, sy) for box in detector.detect(small)]


@contextlib.contextmanager
def timed(timings: dict[str, float] | None, step: str) -> Iterator[None]:
    """Add the block's seconds to ``timings[step]`` (nothing when ``timings`` is None)."""
    if timings is None:
        yield
        return
    start = time.perf_counter()
    try:
        yield
    finally:
        timings[step] = timings.get(step, 0.0) + time.perf_counter() - start


def analyze_image(
    image: np.ndarray,
    analyzer: FaceAnalyzer,
    *,
    min_face: int,
    min_sharpness: float,
    sharpness_size: int,
    detect_scale: float | None = None,
    timings: dict[str, float] | None = None,
) -> PhotoAnalysis:
    """Detect every face, then keep those at least ``min_face`` large and ``min_sharpness`` sharp.

    Detection runs on a shrunk copy (:func:`detect_faces`, ``detect_scale`` overrides its factor);
    landmarks, sharpness (Laplacian variance in the box of the 68 landmarks) and the embedding use the
    full-resolution photo. ``timings``, when given, accumulates seconds per step (``detect``,
    ``landmarks``, ``sharpness``, ``embed``) for the benchmark.
    """
    h, w = image.shape[:2]
    with timed(timings, "detect"):
        boxes = detect_faces(image, analyzer.detector, min_face=min_face, scale=detect_scale)
    if not boxes:
        return PhotoAnalysis(w, h, 0, reason="no_face", detail=f"{analyzer.detector.name} found no face")
    with timed(timings, "landmarks"):
        sized = []
        for box in boxes:
            points = analyzer.landmarker.landmarks(image, box)
            sized.append((box, points, quad_size(points)))
    large = [s for s in sized if s[2] >= min_face]
    if not large:
        biggest = max(s[2] for s in sized)
        detail = f"largest face {biggest:.0f} px < min_face {min_face}"
        return PhotoAnalysis(w, h, len(boxes), reason="face_too_small", detail=detail)
    with timed(timings, "sharpness"):
        # Measured in the landmarks' box, not the detector's: it does not move with the detection scale.
        sharp = [(b, p, q, face_sharpness(image, _box_of(p), size=sharpness_size)) for b, p, q in large]
    usable = [s for s in sharp if s[3] >= min_sharpness]
    if not usable:
        best = max(s[3] for s in sharp)
        detail = f"sharpest face {best:.1f} < min_sharpness {min_sharpness}"
        return PhotoAnalysis(w, h, len(boxes), reason="blurry", detail=detail)
    with timed(timings, "embed"):
        candidates = tuple(Candidate(b, p, analyzer.embedder.embed(image, p), q, s) for b, p, q, s in usable)
    return PhotoAnalysis(w, h, len(boxes), candidates)


def analyze_photo(
    path: Path, analyzer: FaceAnalyzer, *, min_face: int, min_sharpness: float, sharpness_size: int
) -> PhotoAnalysis:
    """:func:`analyze_image` on the photo at ``path``, or the reason it does not decode."""
    try:
        image = read_image(path)
    except ImageDecodeError as exc:
        return PhotoAnalysis(reason="decode_error", detail=str(exc))
    return analyze_image(
        image, analyzer, min_face=min_face, min_sharpness=min_sharpness, sharpness_size=sharpness_size
    )


def _box_of(points: np.ndarray) -> FaceBox:
    (x0, y0), (x1, y1) = points.min(axis=0), points.max(axis=0)
    return FaceBox(float(x0), float(y0), float(x1), float(y1))


def _overlap(a: FaceBox, b: FaceBox) -> float:
    iw = max(0.0, min(a.right, b.right) - max(a.left, b.left))
    ih = max(0.0, min(a.bottom, b.bottom) - max(a.top, b.top))
    inter = iw * ih
    union = a.area + b.area - inter
    return inter / union if union > 0 else 0.0


def align_image(
    image: np.ndarray, landmarks: np.ndarray, analyzer: FaceAnalyzer, *, size: int
) -> AlignedPhoto:
    """Align the face given by ``landmarks`` to ``size × size`` and re-detect its 68 landmarks there.

    The landmarker is run in the detected box that best overlaps the transformed source landmarks (or in
    their bounding box when the detector misses the aligned face), so the aligned landmarks come from the
    image they describe.
    """
    aligned = align_face(image, landmarks, output_size=size)
    moved = transform_points(landmarks, aligned.matrix)
    expected = _box_of(moved)
    # The aligned face's quad is the whole image: detection can run on a shrunk copy.
    boxes = detect_faces(aligned.image, analyzer.detector, min_face=size)
    scored = sorted(((_overlap(b, expected), i) for i, b in enumerate(boxes)), reverse=True)
    if scored and scored[0][0] >= 0.3:
        box, source = boxes[scored[0][1]], analyzer.detector.name
    else:
        box, source = expected, "transformed"
    points = analyzer.landmarker.landmarks(aligned.image, box)
    return AlignedPhoto(
        image=aligned.image,
        landmarks=points,
        matrix=aligned.matrix,
        landmark_source=f"{analyzer.landmarker.name} in {source} box",
        dhash=difference_hash(aligned.image),
    )


def align_photo(path: Path, landmarks: np.ndarray, analyzer: FaceAnalyzer, *, size: int) -> AlignedPhoto:
    """:func:`align_image` on the photo at ``path``, or the reason it does not decode."""
    try:
        image = read_image(path)
    except ImageDecodeError as exc:
        return AlignedPhoto(None, None, None, reason="decode_error", detail=str(exc))
    return align_image(image, landmarks, analyzer, size=size)


def _floats(values: np.ndarray) -> list[float]:
    return [float(v) for v in np.asarray(values, dtype=np.float64).reshape(-1)]


def analysis_record(analysis: PhotoAnalysis) -> dict[str, Any]:
    """``analysis`` as a JSON-able dict (exact: float64 and float32 values survive a JSON round trip)."""
    return {
        "width": analysis.width,
        "height": analysis.height,
        "n_faces": analysis.n_faces,
        "reason": analysis.reason,
        "detail": analysis.detail,
        "candidates": [
            {
                "box": [c.box.left, c.box.top, c.box.right, c.box.bottom, c.box.score],
                "landmarks": _floats(c.landmarks),
                "embedding": _floats(c.embedding),
                "face_size": c.face_size,
                "sharpness": c.sharpness,
            }
            for c in analysis.candidates
        ],
    }


def analysis_from_record(record: dict[str, Any]) -> PhotoAnalysis:
    """The :class:`PhotoAnalysis` that :func:`analysis_record` wrote."""
    candidates = tuple(
        Candidate(
            box=FaceBox(*(float(v) for v in c["box"])),
            landmarks=np.asarray(c["landmarks"], dtype=np.float64).reshape(68, 2),
            embedding=np.asarray(c["embedding"], dtype=np.float32),
            face_size=float(c["face_size"]),
            sharpness=float(c["sharpness"]),
        )
        for c in record["candidates"]
    )
    return PhotoAnalysis(
        width=int(record["width"]),
        height=int(record["height"]),
        n_faces=int(record["n_faces"]),
        candidates=candidates,
        reason=record["reason"],
        detail=str(record["detail"]),
    )


def aligned_record(aligned: AlignedPhoto) -> dict[str, Any]:
    """``aligned`` without its image as a JSON-able dict (the difference hash as hex of its packed bits)."""
    return {
        "landmarks": None if aligned.landmarks is None else _floats(aligned.landmarks),
        "matrix": None if aligned.matrix is None else _floats(aligned.matrix),
        "landmark_source": aligned.landmark_source,
        "dhash_bits": int(aligned.dhash.size),
        "dhash": np.packbits(aligned.dhash).tobytes().hex(),
        "reason": aligned.reason,
        "detail": aligned.detail,
    }


def aligned_from_record(record: dict[str, Any]) -> AlignedPhoto:
    """The image-less :class:`AlignedPhoto` that :func:`aligned_record` wrote."""
    bits = np.unpackbits(np.frombuffer(bytes.fromhex(record["dhash"]), dtype=np.uint8))
    landmarks, matrix = record["landmarks"], record["matrix"]
    return AlignedPhoto(
        image=None,
        landmarks=None if landmarks is None else np.asarray(landmarks, dtype=np.float64).reshape(68, 2),
        matrix=None if matrix is None else np.asarray(matrix, dtype=np.float64).reshape(2, 3),
        landmark_source=str(record["landmark_source"]),
        dhash=bits[: int(record["dhash_bits"])].astype(bool),
        reason=record["reason"],
        detail=str(record["detail"]),
    )
