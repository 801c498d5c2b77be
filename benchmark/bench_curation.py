"""Curation throughput: images per second for decode, detect, landmarks, embed and align, and in total.

Runs the offline face-analysis stack (dlib HOG detector, 68-point shape predictor, ResNet embedder,
FFHQ alignment to 512²) on the bundled public-domain demo photos. Per-step rates come from one process
(one core); the end-to-end rate is measured with a pool of ``--workers`` processes (default 2: the
cores of the reference machine), each running every step on whole images.

    python -m benchmark.bench_curation [--data DIR] [--workers 2] [--repeat 2] [--upsample 1] [--max-side N]
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import statistics
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

# One thread per process everywhere, so that --workers is the number of cores used.
for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import cv2  # noqa: E402

from celebref.images import decode_image  # noqa: E402
from faces.align import align_face  # noqa: E402
from faces.analysis import FaceAnalyzer, FaceAnalyzerConfig, build_face_analyzer  # noqa: E402

STEPS = ("decode", "detect", "landmarks", "embed", "align")
_REPO = Path(__file__).resolve().parent.parent
_EXTS = {".jpg", ".jpeg", ".png"}


def default_data_dir() -> Path:
    bundled = _REPO / "tests" / "data" / "demo_faces"
    return bundled if bundled.is_dir() else _REPO.parent / "shared" / "testdata" / "pd_faces"


def list_images(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.suffix.lower() in _EXTS and p.is_file())


@dataclass
class StepTimes:
    seconds: dict[str, float] = field(default_factory=lambda: dict.fromkeys(STEPS, 0.0))
    counts: dict[str, int] = field(default_factory=lambda: dict.fromkeys(STEPS, 0))

    def add(self, step: str, seconds: float) -> None:
        self.seconds[step] += seconds
        self.counts[step] += 1


def process(data: bytes, analyzer: FaceAnalyzer, times: StepTimes | None = None) -> int:
    """Every curation step on one encoded image; returns the number of faces detected."""
    t0 = time.perf_counter()
    image = decode_image(data)
    t1 = time.perf_counter()
    boxes = analyzer.detector.detect(image)
    t2 = time.perf_counter()
    if times is not None:
        times.add("decode", t1 - t0)
        times.add("detect", t2 - t1)
    if not boxes:
        return 0
    landmarks = analyzer.landmarker.landmarks(image, boxes[0])
    t3 = time.perf_counter()
    analyzer.embedder.embed(image, landmarks)
    t4 = time.perf_counter()
    align_face(image, landmarks, output_size=512)
    t5 = time.perf_counter()
    if times is not None:
        times.add("landmarks", t3 - t2)
        times.add("embed", t4 - t3)
        times.add("align", t5 - t4)
    return len(boxes)


_WORKER: FaceAnalyzer | None = None


def _init_worker(config: FaceAnalyzerConfig) -> None:
    global _WORKER
    cv2.setNumThreads(1)
    _WORKER = build_face_analyzer(config)
    _warm(_WORKER)


def _work(data: bytes) -> int:
    assert _WORKER is not None
    return process(data, _WORKER)


def _warm(analyzer: FaceAnalyzer) -> None:
    """Load every model before timing."""
    for component in (analyzer.detector, analyzer.landmarker, analyzer.embedder):
        _ = component.model  # type: ignore[attr-defined]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=default_data_dir(), help="folder of photos (recursive)")
    parser.add_argument("--workers", type=int, default=2, help="processes for the end-to-end rate")
    parser.add_argument("--repeat", type=int, default=2, help="passes over the photos")
    parser.add_argument("--upsample", type=int, default=1, help="dlib HOG upsampling passes")
    parser.add_argument("--max-side", type=int, default=None, help="detect on a copy downscaled to this side")
    args = parser.parse_args(argv)

    cv2.setNumThreads(1)
    paths = list_images(args.data)
    if not paths:
        print(f"no images under {args.data}", file=sys.stderr)
        return 1
    blobs = [p.read_bytes() for p in paths]
    sizes = [decode_image(b).shape[:2] for b in blobs]
    mpix = [h * w / 1e6 for h, w in sizes]
    config = FaceAnalyzerConfig(upsample=args.upsample, max_side=args.max_side)

    print(f"data: {args.data} — {len(paths)} photos, {sum(len(b) for b in blobs) / 1e6:.1f} MB encoded")
    print(
        f"sizes: {min(mpix):.2f}–{max(mpix):.2f} MP (median {statistics.median(mpix):.2f} MP); "
        f"largest {max(sizes, key=lambda s: s[0] * s[1])[1]}x{max(sizes, key=lambda s: s[0] * s[1])[0]}, "
        f"smallest {min(sizes, key=lambda s: s[0] * s[1])[1]}x{min(sizes, key=lambda s: s[0] * s[1])[0]}"
    )
    print(
        f"config: detector=hog upsample={args.upsample} max_side={args.max_side} landmarker=dlib "
        f"embedder=dlib align=512 | repeat={args.repeat} | cpu count {os.cpu_count()}"
    )

    # Per-step rates, one process.
    analyzer = build_face_analyzer(config)
    _warm(analyzer)
    times = StepTimes()
    faces = 0
    for _ in range(args.repeat):
        for data in blobs:
            faces += process(data, analyzer, times) > 0
    print("\nper step, 1 process (images/s; landmarks/embed/align count images with a face):")
    for step in STEPS:
        n, s = times.counts[step], times.seconds[step]
        rate = n / s if s > 0 else float("nan")
        print(f"  {step:<10} {rate:8.2f} img/s   ({n} images, {1000 * s / max(n, 1):7.1f} ms each)")
    serial_total = sum(times.seconds.values())
    n_images = len(blobs) * args.repeat
    print(
        f"  {'total':<10} {n_images / serial_total:8.2f} img/s   "
        f"(sum of steps; {faces}/{n_images} with a face)"
    )

    # End-to-end, a pool of worker processes.
    ctx = mp.get_context("spawn")
    with ctx.Pool(args.workers, initializer=_init_worker, initargs=(config,)) as pool:
        pool.map(_work, blobs[: args.workers], chunksize=1)  # make sure every worker has started
        start = time.perf_counter()
        found = pool.map(_work, blobs * args.repeat, chunksize=1)
        wall = time.perf_counter() - start
    print(
        f"\nend to end, {args.workers} processes: {n_images / wall:.2f} img/s "
        f"({n_images} images in {wall:.1f} s; {sum(1 for f in found if f)} with a face)"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
