"""Curation throughput: photos per second for each per-photo step of curate, and end to end.

Runs curate's own per-photo analysis (:func:`curate.analyze.analyze_image`: detection on a copy shrunk as
far as ``--min-face`` allows, then landmarks, sharpness and the identity embedding at full resolution for
the faces large enough) and alignment of the chosen face to 512² with landmarks re-detected
(:func:`curate.analyze.align_image`) on the bundled public-domain demo photos, with the offline dlib stack
(HOG detector, 68-point shape predictor, ResNet embedder). Per-step figures come from one process (one
core); the end-to-end rate from a pool of ``--workers`` processes (default 2: the cores of the reference
machine), each doing every step for whole photos. ``--full-resolution`` detects on the photo itself, as
curate did before detection was shrunk: run both to compare on the same photos.

    python -m benchmark.bench_curation [--min-face 512] [--full-resolution] [--workers 2] [--repeat 2]
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path

# One thread per process everywhere, so that --workers is the number of cores used.
for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import cv2  # noqa: E402

from celebref.images import decode_image  # noqa: E402
from curate.analyze import align_image, analyze_image, timed  # noqa: E402
from faces.analysis import FaceAnalyzer, FaceAnalyzerConfig, build_face_analyzer  # noqa: E402

STEPS = ("decode", "detect", "landmarks", "sharpness", "embed", "align")
_REPO = Path(__file__).resolve().parent.parent
_EXTS = {".jpg", ".jpeg", ".png"}


def default_data_dir() -> Path:
    bundled = _REPO / "tests" / "data" / "demo_faces"
    return bundled if bundled.is_dir() else _REPO.parent / "shared" / "testdata" / "pd_faces"


def list_images(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.suffix.lower() in _EXTS and p.is_file())


@dataclass(frozen=True)
class Settings:
    """What each photo goes through (curate's per-photo settings)."""

    min_face: int = 512
    min_sharpness: float = 0.0
    sharpness_size: int = 256
    size: int = 512
    detect_scale: float | None = None  # None: curate's shrunk detection; 1.0: full resolution


def process(
    data: bytes, analyzer: FaceAnalyzer, settings: Settings, times: dict[str, float] | None = None
) -> bool:
    """Every per-photo step of curate on one encoded photo; returns whether it has a usable face."""
    with timed(times, "decode"):
        image = decode_image(data)
    analysis = analyze_image(
        image,
        analyzer,
        min_face=settings.min_face,
        min_sharpness=settings.min_sharpness,
        sharpness_size=settings.sharpness_size,
        detect_scale=settings.detect_scale,
        timings=times,
    )
    if not analysis.candidates:
        return False
    with timed(times, "align"):
        align_image(image, analysis.candidates[0].landmarks, analyzer, size=settings.size)
    return True


_WORKER: FaceAnalyzer | None = None


_SETTINGS = Settings()


def _init_worker(config: FaceAnalyzerConfig, settings: Settings) -> None:
    global _WORKER, _SETTINGS
    cv2.setNumThreads(1)
    _WORKER, _SETTINGS = build_face_analyzer(config), settings
    _warm(_WORKER)


def _work(data: bytes) -> bool:
    assert _WORKER is not None
    return process(data, _WORKER, _SETTINGS)


def _warm(analyzer: FaceAnalyzer) -> None:
    """Load every model before timing."""
    for component in (analyzer.detector, analyzer.landmarker, analyzer.embedder):
        _ = component.model  # type: ignore[attr-defined]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=default_data_dir(), help="folder of photos (recursive)")
    parser.add_argument("--workers", type=int, default=2, help="processes for the end-to-end rate")
    parser.add_argument("--repeat", type=int, default=2, help="passes over the photos")
    parser.add_argument("--min-face", type=int, default=512, help="curate.min_face (paper: 512)")
    parser.add_argument("--full-resolution", action="store_true", help="detect on the photo, not shrunk")
    parser.add_argument("--upsample", type=int, default=1, help="dlib HOG upsampling passes")
    args = parser.parse_args(argv)

    cv2.setNumThreads(1)
    paths = list_images(args.data)
    if not paths:
        print(f"no images under {args.data}", file=sys.stderr)
        return 1
    blobs = [p.read_bytes() for p in paths]
    sizes = [decode_image(b).shape[:2] for b in blobs]
    mpix = [h * w / 1e6 for h, w in sizes]
    config = FaceAnalyzerConfig(upsample=args.upsample)
    settings = Settings(min_face=args.min_face, detect_scale=1.0 if args.full_resolution else None)
    largest = max(sizes, key=lambda s: s[0] * s[1])
    smallest = min(sizes, key=lambda s: s[0] * s[1])

    print(f"data: {args.data} — {len(paths)} photos, {sum(len(b) for b in blobs) / 1e6:.1f} MB encoded")
    print(
        f"sizes: {min(mpix):.2f}–{max(mpix):.2f} MP (median {statistics.median(mpix):.2f} MP); "
        f"largest {largest[1]}x{largest[0]}, smallest {smallest[1]}x{smallest[0]}"
    )
    detection = "full resolution" if args.full_resolution else "shrunk for min_face"
    print(
        f"config: detector=hog upsample={args.upsample} ({detection}) min_face={args.min_face} "
        f"landmarker=dlib embedder=dlib align=512 | repeat={args.repeat} | cpu count {os.cpu_count()}"
    )

    # Per-step cost, one process.
    analyzer = build_face_analyzer(config)
    _warm(analyzer)
    times: dict[str, float] = {}
    usable = 0
    for _ in range(args.repeat):
        for data in blobs:
            usable += process(data, analyzer, settings, times)
    n_images = len(blobs) * args.repeat
    print("\nper step, 1 process (ms per photo over all photos; later steps run only where a face is left):")
    for step in STEPS:
        ms = 1000 * times.get(step, 0.0) / n_images
        print(f"  {step:<10} {ms:8.1f} ms")
    serial_total = sum(times.values())
    print(
        f"  {'total':<10} {1000 * serial_total / n_images:8.1f} ms = {n_images / serial_total:.2f} photos/s "
        f"({usable}/{n_images} with a usable face)"
    )

    # End-to-end, a pool of worker processes.
    ctx = mp.get_context("spawn")
    with ctx.Pool(args.workers, initializer=_init_worker, initargs=(config, settings)) as pool:
        pool.map(_work, blobs[: args.workers], chunksize=1)  # make sure every worker has started
        start = time.perf_counter()
        found = pool.map(_work, blobs * args.repeat, chunksize=1)
        wall = time.perf_counter() - start
    print(
        f"\nend to end, {args.workers} processes: {n_images / wall:.2f} photos/s "
        f"({n_images} photos in {wall:.1f} s; {sum(found)} with a usable face)"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
