"""Float32 noise between oneDNN kernel paths, which sets the tolerances of the dictionary tests.

A specific dictionary built from N references in one batch and one joined from N one-item builds hold
the same numbers up to the last bits: the batch size, the thread count and the instruction set each pick
another convolution kernel (another summation order). This prints, per configuration, the largest
absolute and relative difference between the two, over every slot of the fixture's three references.
Run each instruction-set cap in its own process (oneDNN reads the variable once)::

    python -m benchmark.bench_kernel_noise [--threads 1 2]
    ONEDNN_MAX_CPU_ISA=AVX2 ATEN_CPU_CAPABILITY=avx2 python -m benchmark.bench_kernel_noise

It generates the fixture-rule weights of the official layout in memory (about 0.6 GB) first.
"""

from __future__ import annotations

import argparse

import numpy as np
import torch

from celebref.hardware import capabilities
from celebref.images import read_image
from dmdnet.boxes import component_boxes
from dmdnet.dictionary import SpecificDictionary
from dmdnet.fixture_weights import generate_fixture_state_dict, load_manifest_shapes
from dmdnet.inference import to_tensor
from dmdnet.official import load_official
from tests.paths import DMDNET_FIXTURE


def _references() -> tuple[torch.Tensor, torch.Tensor]:
    refs = DMDNET_FIXTURE / "refs"
    images = to_tensor(np.stack([read_image(refs / f"ref_{k}.png") for k in range(3)]))
    boxes = np.stack([component_boxes(np.loadtxt(refs / f"ref_{k}_landmarks.txt")) for k in range(3)])
    return images, torch.from_numpy(boxes)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m benchmark.bench_kernel_noise",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--threads", type=int, nargs="+", default=[1, 2], help="thread counts to compare (default: 1 2)"
    )
    return parser


def main(argv: list[str] | None = None) -> None:
    parser = _parser()
    args = parser.parse_args(argv)
    if min(args.threads) < 1:
        parser.error("--threads must be >= 1")
    print(capabilities("cpu").describe())
    shapes = load_manifest_shapes(DMDNET_FIXTURE / "weights_manifest.json")
    model = load_official(generate_fixture_state_dict(shapes), tasks=("dictionary",))
    images, boxes = _references()
    for threads in args.threads:
        torch.set_num_threads(threads)
        for channels_last in (False, True):
            x = images.contiguous(memory_format=torch.channels_last) if channels_last else images
            with torch.inference_mode():
                batch = SpecificDictionary.build(model, x, boxes)
                joined = SpecificDictionary.concat(
                    [SpecificDictionary.build(model, x[k : k + 1], boxes[k : k + 1]) for k in range(3)]
                )
            abs_diff = rel_diff = scale = 0.0
            for slot in batch.keys:
                pairs = ((batch.keys[slot], joined.keys[slot]), (batch.values[slot], joined.values[slot]))
                for a, b in pairs:
                    d = (a - b).abs()
                    abs_diff = max(abs_diff, float(d.max()))
                    rel_diff = max(rel_diff, float((d / b.abs().clamp_min(1e-3)).max()))
                    scale = max(scale, float(b.abs().max()))
            print(
                f"threads {threads}  channels_last {channels_last!s:5}  max|batch - joined| {abs_diff:.3g}  "
                f"max relative (|b| >= 1e-3) {rel_diff:.3g}  max|value| {scale:.3g}"
            )


if __name__ == "__main__":
    main()
