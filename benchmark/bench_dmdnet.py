"""DMDNet inference speed and memory at 512×512.

Prints, per batch size, the median over ``--runs`` timed runs (after one warm-up) of
(a) generic restoration, (b) building a specific dictionary from ``--refs`` references and
(c) specific restoration with that dictionary cached (saved by another process and loaded from disk,
as when restoring more photos of one person), each measured in a fresh process that loads the
checkpoint file with ``load_official`` as a user would (the parts of the network its task runs, as the
restore command line loads them), together with that process's peak memory (RSS
high-water mark of its own address space, and its RSS once the model is loaded; on CUDA also the peak
allocated GPU memory). With
``--precision bf16`` it also prints the PSNR of the bf16 generic output against the fp32 one on the
fixture's LQ input. The weights follow the numerical fixture's deterministic rule (timing does not depend
on the values; written to a temporary ``.pth`` by a child process) unless ``--weights`` names a real
``DMDNet.pth``. Peak RSS includes what the imports themselves map: about 0.5 GiB for the CUDA build of
torch on this machine.

    python benchmark/bench_dmdnet.py                        # CPU, fp32, batch 1, 2 threads
    python benchmark/bench_dmdnet.py --precision bf16
    python benchmark/bench_dmdnet.py --device cuda --batch 1 8 --precision fp32   # TF32 disabled
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from torch.utils._python_dispatch import TorchDispatchMode

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:  # run as a script from anywhere
    sys.path.insert(0, str(REPO))

from celebref.hardware import UnsupportedDevice, UnsupportedPrecision, capabilities  # noqa: E402
from celebref.images import read_image  # noqa: E402
from dmdnet.boxes import component_boxes  # noqa: E402
from dmdnet.dictionary import SpecificDictionary  # noqa: E402
from dmdnet.fixture_weights import generate_fixture_state_dict  # noqa: E402
from dmdnet.inference import InferenceConfig, Restorer, to_tensor  # noqa: E402
from dmdnet.official import load_official, official_shapes  # noqa: E402

FIXTURE = REPO / "tests" / "data" / "dmdnet_official"
TASKS = ("generic", "dictionary", "cached")
#: The parts of the network (``load_official(tasks=...)``) each measurement process loads.
WORKER_TASKS = {
    "generic": ("generic",),
    "psnr": ("generic",),
    "convs": ("generic",),
    "dictionary": ("dictionary",),
    "savedict": ("dictionary",),
    "cached": ("specific",),
}


def _inputs(
    fixture: Path, batch: int, refs: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """LQ batch + boxes and reference batch + boxes (fixture images repeated; random faces if absent).

    ``refs=0`` gives empty reference tensors (generic restoration holds no references).
    """
    if (fixture / "lq.png").is_file():
        lq = to_tensor(read_image(fixture / "lq.png"))
        lq_boxes = torch.from_numpy(component_boxes(np.loadtxt(fixture / "lq_landmarks.txt")))[None]
        ref_imgs, ref_boxes = [], []
        for k in range(refs):
            j = k % 3
            ref_imgs.append(read_image(fixture / "refs" / f"ref_{j}.png"))
            ref_boxes.append(component_boxes(np.loadtxt(fixture / "refs" / f"ref_{j}_landmarks.txt")))
        ref_t = to_tensor(np.stack(ref_imgs)) if refs else torch.empty(0, 3, 512, 512)
        ref_b = torch.from_numpy(np.stack(ref_boxes)) if refs else torch.empty(0, 4, 4, dtype=torch.int64)
    else:
        g = torch.Generator().manual_seed(0)
        lq = torch.rand(1, 3, 512, 512, generator=g) * 2 - 1
        lq_boxes = torch.tensor(
            [[[155, 194, 231, 269], [279, 192, 355, 267], [210, 249, 301, 339], [174, 302, 337, 465]]]
        )
        ref_t = torch.rand(refs, 3, 512, 512, generator=g) * 2 - 1
        ref_b = lq_boxes.repeat(refs, 1, 1)
    return lq.repeat(batch, 1, 1, 1), lq_boxes.repeat(batch, 1, 1), ref_t, ref_b


def _rss_mb() -> float:
    """Current resident set size in MiB (Linux; NaN elsewhere)."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
    except (OSError, ValueError):
        return float("nan")


def _peak_rss_mb() -> float:
    """This process's peak RSS in MiB.

    On Linux ``VmHWM`` of this address space: ``ru_maxrss`` would also count the spawning parent's memory,
    because a child started with ``vfork`` + ``exec`` inherits the parent's high-water mark.
    """
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


_CONV_OPS = frozenset({"conv2d", "convolution", "_convolution_pointwise", "_convolution_pointwise_"})


class _ConvRecorder(TorchDispatchMode):
    """Records every convolution call (plain or oneDNN-fused) with its arguments."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[tuple[object, tuple, dict]] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):  # noqa: ANN001, ANN204
        kwargs = kwargs or {}
        if func.overloadpacket.__name__ in _CONV_OPS:
            self.calls.append((func, args, kwargs))
        return func(*args, **kwargs)


def replay_convolutions(run: Callable[[], object], *, runs: int) -> dict:
    """The convolutions of one ``run()`` replayed one by one, each on its own (warm, median of ``runs``).

    Their summed time is what the convolutions alone cost on this machine in the same shapes, dtypes and
    layouts: the pass cannot be faster than that without doing fewer multiply-adds.
    """
    recorder = _ConvRecorder()
    with torch.inference_mode(), recorder:
        run()
    total_s, flops = 0.0, 0.0
    with torch.inference_mode():
        for func, args, kwargs in recorder.calls:
            weight = args[2] if func._overloadname == "binary" else args[1]  # (x, other, weight, …) there
            out = func(*[a.clone() if isinstance(a, torch.Tensor) else a for a in args], **kwargs)
            # 2 · out elements · (in channels per group · kh · kw) multiply-adds
            flops += 2.0 * out.numel() * weight[0].numel()
            times = []
            for _ in range(runs):
                # a fresh first argument: the in-place variant writes into it
                fresh = [a.clone() if not i and torch.is_tensor(a) else a for i, a in enumerate(args)]
                t0 = time.perf_counter()
                func(*fresh, **kwargs)
                times.append(time.perf_counter() - t0)
            total_s += float(np.median(times))
    return {"conv_calls": len(recorder.calls), "conv_gflop": flops / 1e9, "conv_s": total_s}


def worker(args: argparse.Namespace) -> dict:
    """One measurement in this (fresh) process; returns a JSON-able dict."""
    torch.set_num_threads(args.threads)
    # each process loads only what its task runs, as the restore command line does
    model = load_official(args.weights, tasks=WORKER_TASKS[args.worker])
    restorer = Restorer(
        model, InferenceConfig(device=args.device, precision=args.precision, batch_size=args.worker_batch)
    )
    load_rss_mb = _rss_mb()
    generic = args.worker in ("generic", "psnr", "convs")
    lq, lq_boxes, refs, ref_boxes = _inputs(args.fixture, args.worker_batch, 0 if generic else args.refs)
    dictionary = None
    if args.worker == "savedict":  # the cached task's dictionary, built once in its own process
        restorer.build_dictionary(refs, ref_boxes).save(args.dictionary_file)
        return {"task": "savedict"}
    if args.worker == "cached":  # as a user restoring more photos of a person: the dictionary comes from disk
        dictionary = SpecificDictionary.load(args.dictionary_file)
    if args.device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()

    def step() -> None:
        if args.worker == "dictionary":
            restorer.build_dictionary(refs, ref_boxes)
        elif args.worker == "cached":
            restorer.restore(lq, lq_boxes, dictionary)
        else:
            restorer.restore(lq, lq_boxes)

    result: dict = {"task": args.worker, "batch": args.worker_batch}
    if args.worker == "convs":
        restorer.restore(lq, lq_boxes)  # warm-up
        result.update(replay_convolutions(lambda: restorer.restore(lq, lq_boxes), runs=args.runs))
        return result
    if args.worker == "psnr":
        out = restorer.restore(lq[:1], lq_boxes[:1])
        del restorer, model  # a bf16 restorer converted the model's convs in place: load it again for fp32
        fp32_model = load_official(args.weights, tasks=("generic",))
        fp32 = Restorer(fp32_model, InferenceConfig(device=args.device, precision="fp32"))
        ref = fp32.restore(lq[:1], lq_boxes[:1])
        mse = float((((out - ref) / 2) ** 2).mean())  # images mapped from [-1, 1] to [0, 1]
        result["psnr_db"] = float("inf") if mse == 0 else 10 * np.log10(1.0 / mse)
        return result
    step()  # warm-up
    _sync(args.device)
    times = []
    for _ in range(args.runs):
        t0 = time.perf_counter()
        step()
        _sync(args.device)
        times.append(time.perf_counter() - t0)
    result["median_s"] = float(np.median(times))
    result["times_s"] = [round(t, 4) for t in times]
    result["peak_rss_mb"] = _peak_rss_mb()
    result["load_rss_mb"] = load_rss_mb
    if args.device.startswith("cuda"):
        result["peak_cuda_mb"] = torch.cuda.max_memory_allocated() / 2**20
    return result


def _spawn(args: argparse.Namespace, task: str, batch: int, weights: Path) -> dict:
    cmd = [
        sys.executable,
        str(Path(__file__).resolve()),
        "--worker",
        task,
        "--worker-batch",
        str(batch),
        "--weights",
        str(weights),
        "--device",
        args.device,
        "--precision",
        args.precision,
        "--threads",
        str(args.threads),
        "--runs",
        str(args.runs),
        "--refs",
        str(args.refs),
        "--fixture",
        str(args.fixture),
        "--dictionary-file",
        str(args.dictionary_file),
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"{task} (batch {batch}) failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    parser.add_argument("--precision", default="fp32", choices=("fp32", "bf16"))
    parser.add_argument("--batch", type=int, nargs="+", default=[1], help="batch sizes, e.g. --batch 1 8")
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    parser.add_argument("--runs", type=int, default=5, help="timed runs per measurement (median reported)")
    parser.add_argument("--refs", type=int, default=8, help="references in the specific dictionary")
    parser.add_argument("--tasks", nargs="+", default=list(TASKS), choices=TASKS)
    parser.add_argument(
        "--convs",
        action="store_true",
        help="also replay the convolutions of one generic pass one by one (CPU): what they alone cost",
    )
    parser.add_argument(
        "--weights", type=Path, default=None, help="official DMDNet.pth (default: fixture rule)"
    )
    parser.add_argument("--fixture", type=Path, default=FIXTURE, help="fixture folder with lq.png and refs/")
    parser.add_argument(
        "--worker",
        default=None,
        choices=(*TASKS, "psnr", "convs", "weights", "savedict"),
        help=argparse.SUPPRESS,
    )
    parser.add_argument("--dictionary-file", type=Path, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--worker-batch", type=int, default=1, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker == "weights":  # the fixture-rule checkpoint, written by a child process
        torch.save(generate_fixture_state_dict(official_shapes()), args.weights)
        return
    if args.worker:
        print(json.dumps(worker(args)))
        return

    try:
        caps = capabilities(args.device)
        caps.require(args.precision)
    except (UnsupportedDevice, UnsupportedPrecision) as exc:
        raise SystemExit(f"error: {exc}") from None
    print(
        f"torch {torch.__version__}, device {args.device}, precision {args.precision}, threads {args.threads}"
    )
    print(caps.describe())
    if caps.device != "cpu":
        print(capabilities("cpu").describe())
    if hasattr(os, "getloadavg"):
        print("load average before: {:.2f} {:.2f} {:.2f}".format(*os.getloadavg()))
    with tempfile.TemporaryDirectory() as tmp:
        weights = args.weights
        if weights is None:
            # generated in a child process: this process stays small while it spawns the measurements
            weights = Path(tmp) / "DMDNet_fixture_rule.pth"
            script = str(Path(__file__).resolve())
            cmd = [sys.executable, script, "--worker", "weights", "--weights", str(weights)]
            subprocess.run(cmd, check=True)
        args.dictionary_file = Path(tmp) / "references.dict.pt"
        for batch in args.batch:
            if "cached" in args.tasks:
                _spawn(args, "savedict", batch, weights)
            for task in args.tasks:
                r = _spawn(args, task, batch, weights)
                per = r["median_s"] / (args.refs if task == "dictionary" else batch) * 1000
                unit = "ms/reference" if task == "dictionary" else "ms/image"
                extra = f", peak GPU {r['peak_cuda_mb']:.0f} MiB" if "peak_cuda_mb" in r else ""
                what = f"{task} ({args.refs} refs)" if task == "dictionary" else task
                print(
                    f"batch {batch:2d}  {what:18s} median {r['median_s']:.3f} s  ({per:.1f} {unit})  "
                    f"peak RSS {r['peak_rss_mb']:.0f} MiB (after loading {r['load_rss_mb']:.0f} MiB){extra}  "
                    f"runs {r['times_s']}"
                )
        if args.convs and args.device == "cpu":
            r = _spawn(args, "convs", 1, weights)
            print(
                f"generic, convolutions alone: {r['conv_calls']} calls, {r['conv_gflop']:.0f} GFLOP, "
                f"replayed one by one {r['conv_s']:.3f} s ({r['conv_gflop'] / r['conv_s']:.0f} GFLOP/s)"
            )
        if args.precision == "bf16":
            r = _spawn(args, "psnr", 1, weights)
            print(f"bf16 generic vs fp32 on the fixture LQ: PSNR {r['psnr_db']:.2f} dB")
    if hasattr(os, "getloadavg"):
        print("load average after: {:.2f} {:.2f} {:.2f}".format(*os.getloadavg()))


if __name__ == "__main__":
    main()
