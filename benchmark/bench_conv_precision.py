"""One 3×3 convolution in fp32, bf16 and bf16 autocast: whether bf16 pays off on this CPU.

Where oneDNN has no bf16 kernels (an AVX2-only CPU, or ``ONEDNN_MAX_CPU_ISA=AVX2``) torch runs bf16
through its slow reference path; this prints how much slower that is than fp32, the figure behind
refusing bf16 there (``celebref.hardware``)::

    python -m benchmark.bench_conv_precision
    ONEDNN_MAX_CPU_ISA=AVX2 ATEN_CPU_CAPABILITY=avx2 python -m benchmark.bench_conv_precision
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

import torch
import torch.nn.functional as F

from celebref.hardware import capabilities


def _median_s(fn: Callable[[], object], runs: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return sorted(times)[len(times) // 2]


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--channels", type=int, default=64)
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--runs", type=int, default=7)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(capabilities("cpu").describe())
    c, s, cl = args.channels, args.size, torch.channels_last
    g = torch.Generator().manual_seed(0)
    x = torch.randn(1, c, s, s, generator=g).contiguous(memory_format=cl)
    w = torch.randn(c, c, 3, 3, generator=g).contiguous(memory_format=cl)
    b = torch.randn(c, generator=g)
    xb, wb, bb = x.bfloat16(), w.bfloat16(), b.bfloat16()

    def autocast() -> torch.Tensor:
        with torch.autocast("cpu", dtype=torch.bfloat16):
            return F.conv2d(x, w, b, padding=1)

    with torch.inference_mode():
        fp32 = _median_s(lambda: F.conv2d(x, w, b, padding=1), args.runs)
        bf16 = _median_s(lambda: F.conv2d(xb, wb, bb, padding=1), args.runs)
        auto = _median_s(autocast, args.runs)
    print(f"{c}->{c} 3x3 conv on {s}x{s}, {args.threads} threads, median of {args.runs}:")
    print(
        f"fp32 {fp32 * 1e3:.1f} ms  bf16 {bf16 * 1e3:.1f} ms  bf16 autocast {auto * 1e3:.1f} ms  "
        f"(bf16 / fp32 = {bf16 / fp32:.2f})"
    )


if __name__ == "__main__":
    main()
