"""Throughput of the benchmark metrics at 512×512 (pairs of restored / ground-truth images per second).

PSNR, SSIM and Id(dlib) run on the CPU with their real models. LPIPS and FID run with GENERATED weights
(a random AlexNet, a random He-scaled FID Inception) loaded through the real loading code: their numbers
are timings only, never scores. ``--device cuda`` moves LPIPS / FID to the GPU.

    python benchmark/bench_metrics.py --images 16 --threads 2 [--device cuda] [--metrics psnr ssim lpips fid]

Ground truths are the bundled demo photos: aligned with dlib when ``id`` is measured (it needs landmarks),
else centre-cropped and resized to 512×512.
"""

from __future__ import annotations

import argparse
import math
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
import torchvision

from benchmark.bench_degrade import demo_photos, square_512
from benchmark.metrics.batched import Metric
from benchmark.metrics.registry import METRICS, build_metric
from degrade.model import DegradationParams, apply
from degrade.ops import to_uint8, upsample_to


def _cropped_faces() -> list[tuple[np.ndarray, None]]:
    """Demo photos centre-cropped to a square and resized to 512×512 (no landmarks)."""
    return [(square_512(photo), None) for photo in demo_photos()]


def _aligned_faces() -> list[tuple[np.ndarray, np.ndarray]]:
    """Aligned 512×512 demo faces with their landmarks (the largest face of each photo)."""
    from faces.align import align_face, transform_points
    from faces.dlib_backend import DlibDetector, DlibLandmarker

    detector, landmarker = DlibDetector(model="hog", upsample=1), DlibLandmarker()
    faces = []
    for photo in demo_photos():
        boxes = detector.detect(photo)
        if boxes:
            points = landmarker.landmarks(photo, boxes[0])
            face = align_face(photo, points)
            faces.append((face.image, transform_points(points, face.matrix)))
    return faces


def _generated_weights(folder: Path) -> tuple[Path, Path]:
    """Random AlexNet and FID-Inception state dicts in the real files' layouts (timing only)."""
    torch.manual_seed(0)
    alexnet = folder / "alexnet-generated.pth"
    torch.save(torchvision.models.alexnet(weights=None).state_dict(), alexnet)
    inception = torchvision.models.inception_v3(
        weights=None, aux_logits=False, num_classes=1008, init_weights=False
    )
    state = inception.state_dict()
    for value in state.values():
        if value.ndim == 4:
            value.normal_(0.0, math.sqrt(2.0 / value[0].numel()))
    fid_file = folder / "inception-generated.pth"
    torch.save(state, fid_file)
    return alexnet, fid_file


def _time(metric: Metric, restored: np.ndarray, gt: np.ndarray, landmarks: list, batch: int) -> float:
    """Pairs per second over one pass of ``update`` calls plus the final ``compute``."""
    start = time.perf_counter()
    for i in range(0, len(gt), batch):
        ids = [str(k) for k in range(i, min(i + batch, len(gt)))]
        metric.update(ids, restored[i : i + batch], gt[i : i + batch], landmarks=landmarks[i : i + batch])
    metric.compute()
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    return len(gt) / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--images", type=int, default=16, help="number of 512×512 pairs")
    parser.add_argument("--batch", type=int, default=8, help="pairs per update call")
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    parser.add_argument("--device", default="cpu", help="device for LPIPS / FID: cpu or cuda")
    parser.add_argument(
        "--metrics", nargs="+", default=list(METRICS), choices=list(METRICS), help="which metrics"
    )
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    faces = _aligned_faces() if "id" in args.metrics else _cropped_faces()
    chosen = [faces[i % len(faces)] for i in range(args.images)]
    gt = np.stack([f[0] for f in chosen])
    landmarks = [f[1] for f in chosen]  # None entries when Id is not measured
    params = DegradationParams(sigma_blur=2.0, scale=4.0, sigma_noise=5.0, jpeg_quality=70, seed=0)
    restored = np.stack([to_uint8(upsample_to(apply(g, params), 512)) for g in gt])
    print(
        f"{len(gt)} pairs at 512x512, batch {args.batch}, torch threads {args.threads}, device {args.device}"
    )

    with tempfile.TemporaryDirectory() as tmp:
        alexnet, inception = _generated_weights(Path(tmp))
        builders: dict[str, tuple[str, Callable[[], Metric]]] = {
            "psnr": ("PSNR", lambda: build_metric("psnr")),
            "ssim": ("SSIM", lambda: build_metric("ssim")),
            "id": ("Id(dlib)", lambda: build_metric("id")),
            "lpips": (
                "LPIPS [generated weights, timing only]",
                lambda: build_metric("lpips", alexnet_path=alexnet, device=args.device),
            ),
            "fid": (
                "FID [generated weights, timing only]",
                lambda: build_metric("fid", weights_path=inception, device=args.device),
            ),
        }
        for name in args.metrics:
            label, build = builders[name]
            metric = build()
            warm = slice(0, args.batch)
            _time(metric, restored[warm], gt[warm], landmarks[warm], args.batch)  # warm-up, not reported
            metric.reset()
            print(f"{label}: {_time(metric, restored, gt, landmarks, args.batch):.2f} pairs/s", flush=True)


if __name__ == "__main__":
    main()
