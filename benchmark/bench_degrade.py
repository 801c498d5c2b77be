"""Throughput of the degradation model at 512×512 on this machine.

Prints images per second for (a) ``apply`` alone in this process and (b) the test-set stage
(``degrade.testset.run``: read PNG, draw, degrade, write PNG, table) with 1 and 2 worker processes,
including the worker start-up. Inputs: the bundled demo photos, centre-cropped and resized to 512×512,
repeated to ``--images``.

    python benchmark/bench_degrade.py --images 64
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

from celebref.images import read_image, write_png
from degrade.config import DegradeConfig
from degrade.model import apply, image_rng, sample_params
from degrade.testset import run

DEMO = Path(__file__).resolve().parents[1] / "tests" / "data" / "demo_faces"


def demo_photos() -> list[np.ndarray]:
    """The bundled demo photos, RGB uint8, in path order."""
    return [read_image(p) for p in sorted(DEMO.rglob("*")) if p.suffix in {".jpg", ".png"}]


def square_512(image: np.ndarray) -> np.ndarray:
    """Centre square of an RGB image resized to 512×512 (bicubic), RGB uint8."""
    h, w = image.shape[:2]
    side = min(h, w)
    top, left = (h - side) // 2, (w - side) // 2
    crop = Image.fromarray(image[top : top + side, left : left + side])
    return np.asarray(crop.resize((512, 512), Image.Resampling.BICUBIC))


def _make_dataset(root: Path, n_images: int) -> list[np.ndarray]:
    photos = [square_512(photo) for photo in demo_photos()]
    images = []
    for i in range(n_images):
        image = photos[i % len(photos)]
        write_png(root / "test" / f"person_{i % 8}" / f"{i}.png", image)
        images.append(image)
    return images


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--images", type=int, default=64, help="number of 512×512 ground-truth images")
    args = parser.parse_args()
    cv2.setNumThreads(1)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        images = _make_dataset(root / "ds", args.images)
        config = DegradeConfig(seed=0)
        params = [sample_params(image_rng(0, f"img/{i}"), config.ranges) for i in range(len(images))]
        start = time.perf_counter()
        for image, p in zip(images, params, strict=True):
            apply(image, p)
        elapsed = time.perf_counter() - start
        print(f"apply (random r in 1..10, 1 process): {len(images) / elapsed:.1f} images/s")
        for workers in (1, 2):
            cfg = config.model_copy(update={"workers": workers, "test_scales": {"x4": 4.0}})
            start = time.perf_counter()
            run(cfg, root / "ds", root / f"lq{workers}")
            elapsed = time.perf_counter() - start
            print(f"test-set stage x4, {workers} worker(s): {len(images) / elapsed:.1f} images/s")


if __name__ == "__main__":
    main()
