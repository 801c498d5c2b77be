"""Per-photo face analysis for curation: the parallel, pure-per-item part of the stage.

Workers hold one face-analyzer bundle each (built once per process). Results come back in input order,
so the stage's output does not depend on the worker count.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from multiprocessing import get_context
from pathlib import Path
from typing import TypeVar

import numpy as np

from celebref.images import ImageDecodeError, read_image
from curate.quality import difference_hash, face_sharpness
from faces.align import align_face, alignment_quad, transform_points
from faces.analysis import FaceAnalyzer, FaceAnalyzerConfig, build_face_analyzer
from faces.types import FaceBox

__all__ = ["Candidate", "PhotoAnalysis", "AlignedPhoto", "analyze_photo", "align_photo", "parallel_map"]

T = TypeVar("T")
R = TypeVar("R")


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


def analyze_photo(
    path: Path, analyzer: FaceAnalyzer, *, min_face: int, min_sharpness: float, sharpness_size: int
) -> PhotoAnalysis:
    """Detect every face, then keep those at least ``min_face`` large and ``min_sharpness`` sharp."""
    try:
        image = read_image(path)
    except ImageDecodeError as exc:
        return PhotoAnalysis(reason="decode_error", detail=str(exc))
    h, w = image.shape[:2]
    boxes = analyzer.detector.detect(image)
    if not boxes:
        return PhotoAnalysis(w, h, 0, reason="no_face", detail=f"{analyzer.detector.name} found no face")
    sized = []
    for box in boxes:
        points = analyzer.landmarker.landmarks(image, box)
        sized.append((box, points, quad_size(points)))
    large = [s for s in sized if s[2] >= min_face]
    if not large:
        biggest = max(s[2] for s in sized)
        detail = f"largest face {biggest:.0f} px < min_face {min_face}"
        return PhotoAnalysis(w, h, len(boxes), reason="face_too_small", detail=detail)
    sharp = [(b, p, q, face_sharpness(image, b, size=sharpness_size)) for b, p, q in large]
    usable = [s for s in sharp if s[3] >= min_sharpness]
    if not usable:
        best = max(s[3] for s in sharp)
        detail = f"sharpest face {best:.1f} < min_sharpness {min_sharpness}"
        return PhotoAnalysis(w, h, len(boxes), reason="blurry", detail=detail)
    candidates = tuple(Candidate(b, p, analyzer.embedder.embed(image, p), q, s) for b, p, q, s in usable)
    return PhotoAnalysis(w, h, len(boxes), candidates)


def _box_of(points: np.ndarray) -> FaceBox:
    (x0, y0), (x1, y1) = points.min(axis=0), points.max(axis=0)
    return FaceBox(float(x0), float(y0), float(x1), float(y1))


def _overlap(a: FaceBox, b: FaceBox) -> float:
    iw = max(0.0, min(a.right, b.right) - max(a.left, b.left))
    ih = max(0.0, min(a.bottom, b.bottom) - max(a.top, b.top))
    inter = iw * ih
    union = a.area + b.area - inter
    return inter / union if union > 0 else 0.0


def align_photo(path: Path, landmarks: np.ndarray, analyzer: FaceAnalyzer, *, size: int) -> AlignedPhoto:
    """Align the chosen face to ``size × size`` and re-detect its 68 landmarks on the aligned image.

    The landmarker is run in the detected box that best overlaps the transformed source landmarks (or in
    their bounding box when the detector misses the aligned face), so the aligned landmarks come from the
    image they describe.
    """
    try:
        image = read_image(path)
    except ImageDecodeError as exc:
        return AlignedPhoto(None, None, None, reason="decode_error", detail=str(exc))
    aligned = align_face(image, landmarks, output_size=size)
    moved = transform_points(landmarks, aligned.matrix)
    expected = _box_of(moved)
    boxes = analyzer.detector.detect(aligned.image)
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


_WORKER_ANALYZER: FaceAnalyzer | None = None


def _init_worker(config: FaceAnalyzerConfig) -> None:
    global _WORKER_ANALYZER
    _WORKER_ANALYZER = build_face_analyzer(config)


def _call(args: tuple[Callable[..., R], tuple, dict]) -> R:
    fn, a, kw = args
    assert _WORKER_ANALYZER is not None
    return fn(*a, _WORKER_ANALYZER, **kw)


def parallel_map(
    fn: Callable[..., R],
    items: Iterable[tuple],
    config: FaceAnalyzerConfig,
    *,
    workers: int,
    **kwargs: object,
) -> Iterator[R]:
    """``fn(*item, analyzer, **kwargs)`` for each item, in input order, on ``workers`` processes.

    ``workers == 1`` runs in this process (easier to debug, same results).
    """
    jobs = [(fn, tuple(item), kwargs) for item in items]
    if workers == 1:
        _init_worker(config)
        yield from map(_call, jobs)
        return
    with get_context("spawn").Pool(workers, initializer=_init_worker, initargs=(config,)) as pool:
        yield from pool.imap(_call, jobs, chunksize=1)
