"""Restoration speed and memory at 512×512: DMDNet, ASFFNet512 and GFRNet side by side.

Prints one markdown table. Each row is measured in a fresh process (``--worker``; JSON on stdout), so the
memory figures belong to that model alone:

* **dmdnet, generic** — generic restoration (no reference), through :func:`benchmark.bench_dmdnet.worker`;
* **dmdnet, cached** — specific restoration with an ``--dmdnet-refs``-reference dictionary built beforehand
  in another process and loaded from disk (as when restoring more photos of one person), also through
  :func:`benchmark.bench_dmdnet.worker`;
* **asffnet512** — one selected reference: the timed call is
  :func:`asffnet.inference.select_references` over a pool of three reference landmark sets plus
  :meth:`asffnet.inference.ASFFNetRestorer.restore` (point mask, MLS warp and network);
* **gfrnet** — one frontal reference: :func:`gfrnet.frontal.most_frontal` over the same pool plus one
  :class:`gfrnet.network.GFRNet` forward (default 512² config) in inference mode.

The DMDNet and ASFFNet512 weights follow their numerical fixtures' deterministic rules (timing does not
depend on the values; written to a temporary file by a child process and loaded from it as a user loads a
checkpoint) unless ``--dmdnet-weights`` / ``--asffnet-weights`` name real files. GFRNet has no released
512² weights: it runs randomly initialised weights (seed 0), for timing only, unless ``--gfrnet-weights``
names a checkpoint written by this project's training (:func:`gfrnet.trained.load_gfrnet`). Inputs are the
fixture faces of ``tests/data/dmdnet_official`` (DMDNet) and ``tests/data/asffnet512_official``
(ASFFNet512, GFRNet: ``lq.png`` and its landmarks; the pool is ``refs/ref_{0,1,2}_landmarks.txt``, each
with the image ``refs/ref_0.png``, the only reference image stored there); the LQ face is repeated
``--batch`` times.

Columns:

* *median s/face*, *min s/face*: median and minimum over ``--runs`` timed calls, after one untimed warm-up
  call, divided by ``--batch`` (wall clock; the output is on the CPU when the clock stops);
* *peak RSS MiB*: the worker process's resident-set high-water mark (``VmHWM`` of its own address space,
  i.e. ``ru_maxrss`` without what a child inherits from its parent), taken right after the timed runs;
  it includes what importing torch maps (about 0.5 GiB for its CUDA build);
* *RSS after load MiB*: the resident set once the model is loaded and prepared, before any input;
* fp32 — *output check*: for ASFFNet512 with the fixture weights, the largest ``|out − out.npy|`` against
  the official implementation's output (the fixture's tolerance is 5e-5), showing that the timed path
  computes the official numbers;
* other precisions — *PSNR vs fp32*: the output against the fp32 output of the same weights and inputs in
  the same process (images mapped from [-1, 1] to [0, 1]); for DMDNet's cached row the fp32 side builds
  its dictionary in fp32 too.

On CUDA a *peak GPU MiB* column (``torch.cuda.max_memory_allocated``) is added.

    python -m benchmark.bench_restore_speed                          # all three, CPU, fp32, 2 threads, 5 runs
    python -m benchmark.bench_restore_speed --precision bf16         # + PSNR of bf16 against fp32
    python -m benchmark.bench_restore_speed --models asffnet512 gfrnet --runs 1   # a quick check
    python -m benchmark.bench_restore_speed --asffnet-weights models/asffnet/ASFFNet512.pth \\
        --dmdnet-weights models/dmdnet/DMDNet.pth --gfrnet-weights path/to/generator.pth
    python -m benchmark.bench_restore_speed --device cuda --batch 8
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:  # run as a script from anywhere
    sys.path.insert(0, str(REPO))

DMDNET_FIXTURE = REPO / "tests" / "data" / "dmdnet_official"
ASFFNET_FIXTURE = REPO / "tests" / "data" / "asffnet512_official"
#: ASFFNet512 fixture tolerance on the output (its README, section 10.2).
ASFFNET_MAX_ABS = 5e-5
SELF = "benchmark.bench_restore_speed"  # each worker runs as ``python -m SELF --worker …``
MODELS = ("dmdnet", "asffnet512", "gfrnet")
#: The table rows of each ``--models`` entry, each its own worker process.
ROWS = {"dmdnet": ("dmdnet-generic", "dmdnet-cached"), "asffnet512": ("asffnet512",), "gfrnet": ("gfrnet",)}
WORKERS = tuple(row for rows in ROWS.values() for row in rows)
UNTRAINED = "timing only: untrained weights (random init, seed 0)"


def psnr_db(out: torch.Tensor, ref: torch.Tensor) -> float:
    """PSNR of two images in [-1, 1], mapped to [0, 1] (``inf`` when they are equal)."""
    mse = float((((out.float() - ref.float()) / 2) ** 2).mean())
    return math.inf if mse == 0 else 10 * math.log10(1.0 / mse)


def _timed(step: Callable[[], torch.Tensor], runs: int, device: str) -> tuple[list[float], torch.Tensor]:
    """One warm-up call, then ``runs`` timed calls; returns the times and the last output."""
    from benchmark.bench_dmdnet import _sync

    out = step()
    _sync(device)
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        out = step()
        _sync(device)
        times.append(time.perf_counter() - t0)
    return times, out


def _summary(times: Sequence[float], load_rss_mb: float, device: str) -> dict:
    """Timing and memory figures of a worker, taken right after its timed runs."""
    from benchmark.bench_dmdnet import _peak_rss_mb

    result = {
        "median_s": float(np.median(times)),
        "min_s": float(min(times)),
        "times_s": [round(t, 4) for t in times],
        "peak_rss_mb": _peak_rss_mb(),
        "load_rss_mb": load_rss_mb,
    }
    if device.startswith("cuda"):
        result["peak_cuda_mb"] = torch.cuda.max_memory_allocated() / 2**20
    return result


# --- DMDNet: bench_dmdnet's own workers ---------------------------------------------------------------


def _dmdnet_namespace(opts: argparse.Namespace, task: str) -> argparse.Namespace:
    """The arguments :func:`benchmark.bench_dmdnet.worker` and ``_spawn`` read."""
    return argparse.Namespace(
        worker=task,
        weights=opts.dmdnet_weights,
        device=opts.device,
        precision=opts.precision,
        threads=opts.threads,
        runs=opts.runs,
        refs=opts.dmdnet_refs,
        fixture=DMDNET_FIXTURE,
        dictionary_file=opts.dictionary_file,
        worker_batch=opts.batch,
    )


def _cached_psnr(opts: argparse.Namespace) -> float:
    """bf16 (etc.) restoration with the saved dictionary against fp32 with an fp32-built dictionary."""
    from benchmark.bench_dmdnet import _inputs
    from dmdnet.dictionary import SpecificDictionary
    from dmdnet.inference import InferenceConfig, Restorer
    from dmdnet.official import load_official

    lq, lq_boxes, refs, ref_boxes = _inputs(DMDNET_FIXTURE, 1, opts.dmdnet_refs)
    low = Restorer(
        load_official(opts.dmdnet_weights, tasks=("specific",)),
        InferenceConfig(device=opts.device, precision=opts.precision),
    )
    out = low.restore(lq, lq_boxes, SpecificDictionary.load(opts.dictionary_file))
    del low
    fp32 = Restorer(
        load_official(opts.dmdnet_weights, tasks=("dictionary", "specific")),
        InferenceConfig(device=opts.device, precision="fp32"),
    )
    ref = fp32.restore(lq, lq_boxes, fp32.build_dictionary(refs, ref_boxes))
    return psnr_db(out, ref)


def dmdnet_worker(opts: argparse.Namespace, *, cached: bool) -> dict:
    """DMDNet generic, or specific with the cached dictionary of ``opts.dictionary_file``."""
    from benchmark.bench_dmdnet import worker

    task = "cached" if cached else "generic"
    r = worker(_dmdnet_namespace(opts, task))  # peak RSS is taken in there, before the PSNR work below
    what = (
        f"specific restoration, {opts.dmdnet_refs}-reference cached dictionary (loaded from disk)"
        if cached
        else "generic restoration (generic dictionary, no reference)"
    )
    result = {
        "what": what,
        "median_s": r["median_s"],
        "min_s": float(min(r["times_s"])),
        **{k: r[k] for k in ("times_s", "peak_rss_mb", "load_rss_mb", "peak_cuda_mb") if k in r},
    }
    if opts.precision != "fp32":
        if cached:
            result["psnr_db"] = _cached_psnr(opts)
        else:
            result["psnr_db"] = worker(_dmdnet_namespace(opts, "psnr"))["psnr_db"]
    return result


# --- ASFFNet512 ---------------------------------------------------------------------------------------


def _asffnet_inputs(batch: int) -> tuple[torch.Tensor, np.ndarray, torch.Tensor, np.ndarray]:
    """LQ ``(B, 3, 512, 512)``, its landmarks ``(B, 68, 2)``, the pool images ``(3, 3, 512, 512)`` and
    landmarks ``(3, 68, 2)`` (every pool entry has the fixture's one stored reference image)."""
    from celebref.images import read_image
    from dmdnet.inference import to_tensor

    lq = to_tensor(read_image(ASFFNET_FIXTURE / "lq.png")).repeat(batch, 1, 1, 1)
    # float32, as the official pipeline has its LQ landmarks (whole numbers here: exact either way)
    marks = np.loadtxt(ASFFNET_FIXTURE / "lq_landmarks.txt").astype(np.float32)
    pool_marks = np.stack([np.loadtxt(ASFFNET_FIXTURE / "refs" / f"ref_{k}_landmarks.txt") for k in range(3)])
    ref = to_tensor(read_image(ASFFNET_FIXTURE / "refs" / "ref_0.png"))
    return lq, np.repeat(marks[None], batch, axis=0), ref.repeat(3, 1, 1, 1), pool_marks


def _asffnet_restorer(opts: argparse.Namespace, precision: str):  # noqa: ANN202
    from asffnet.inference import ASFFNetRestorer
    from asffnet.official import load_official
    from dmdnet.inference import InferenceConfig

    config = InferenceConfig(device=opts.device, precision=precision, batch_size=opts.batch)
    return ASFFNetRestorer(load_official(opts.asffnet_weights), config)


def asffnet_worker(opts: argparse.Namespace) -> dict:
    """Reference selection over the pool + :meth:`ASFFNetRestorer.restore` with the selected reference."""
    from asffnet.inference import select_references
    from benchmark.bench_dmdnet import _rss_mb

    torch.set_num_threads(opts.threads)
    restorer = _asffnet_restorer(opts, opts.precision)
    load_rss_mb = _rss_mb()
    lq, marks, pool, pool_marks = _asffnet_inputs(opts.batch)
    if opts.device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()

    def step() -> torch.Tensor:
        chosen = select_references(list(marks), list(pool_marks))
        return restorer.restore(lq, marks, pool[chosen], pool_marks[chosen])

    times, out = _timed(step, opts.runs, opts.device)
    result = {
        "what": "one selected reference (selection + point mask + MLS + network)",
        **_summary(times, load_rss_mb, opts.device),
    }
    if opts.precision == "fp32":  # meaningful for the fixture's weights only (the driver drops it otherwise)
        expected = torch.from_numpy(np.load(ASFFNET_FIXTURE / "out.npy"))
        result["fixture_max_abs"] = float((out - expected).abs().max())
    else:
        del restorer  # its conv weights were converted in place: load the checkpoint again for fp32
        chosen = select_references(list(marks[:1]), list(pool_marks))
        ref = _asffnet_restorer(opts, "fp32").restore(lq[:1], marks[:1], pool[chosen], pool_marks[chosen])
        result["psnr_db"] = psnr_db(out[:1], ref)
    return result


def _write_asffnet_fixture_weights(path: Path) -> None:
    """The fixture-rule state dict in the release's layout (under ``params``)."""
    from asffnet.fixture_weights import generate_fixture_state_dict
    from asffnet.official import official_shapes

    torch.save({"params": generate_fixture_state_dict(official_shapes())}, path)


# --- GFRNet -------------------------------------------------------------------------------------------


def _gfrnet_model(opts: argparse.Namespace, config=None) -> torch.nn.Module:  # noqa: ANN001
    """The checkpoint of ``--gfrnet-weights``, else a seeded random GFRNet (``config``: default 512²)."""
    if opts.gfrnet_weights is not None:
        from gfrnet.trained import load_gfrnet

        return load_gfrnet(opts.gfrnet_weights)
    from gfrnet.network import GFRNet, GFRNetConfig

    torch.manual_seed(0)
    return GFRNet(config=config or GFRNetConfig())


def _gfrnet_prepared(opts: argparse.Namespace, precision: str, config=None):  # noqa: ANN001, ANN202
    from celebref.hardware import capabilities
    from dmdnet.inference import InferenceConfig, prepare_for_inference

    cfg = InferenceConfig(device=opts.device, precision=precision, batch_size=opts.batch)
    model = _gfrnet_model(opts, config)
    if cfg.channels_last:  # the transposed convs too (prepare_for_inference formats nn.Conv2d weights)
        model = model.to(memory_format=torch.channels_last)
    return prepare_for_inference(model, cfg, capabilities(opts.device)), cfg


def gfrnet_worker(opts: argparse.Namespace, *, config=None) -> dict:  # noqa: ANN001
    """The most frontal reference of the pool + one GFRNet forward (``config``: tests use a small one)."""
    from benchmark.bench_dmdnet import _rss_mb
    from dmdnet.inference import as_network_input, precision_context
    from gfrnet.frontal import most_frontal

    torch.set_num_threads(opts.threads)
    model, cfg = _gfrnet_prepared(opts, opts.precision, config)
    load_rss_mb = _rss_mb()
    lq, _, pool, pool_marks = _asffnet_inputs(opts.batch)
    pool_list = list(pool_marks)
    if opts.device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()

    def forward(net: torch.nn.Module, run_cfg, k: int, n: int) -> torch.Tensor:  # noqa: ANN001
        with precision_context(run_cfg):
            x = as_network_input(lq[:n], run_cfg)
            ref = as_network_input(pool[k : k + 1].expand(n, -1, -1, -1), run_cfg)
            return net(x, ref).restored.float().cpu()

    def step() -> torch.Tensor:
        return forward(model, cfg, most_frontal(pool_list), opts.batch)

    times, out = _timed(step, opts.runs, opts.device)
    result = {
        "what": "one frontal reference (frontal choice + warp + reconstruction)",
        **_summary(times, load_rss_mb, opts.device),
    }
    if opts.precision != "fp32":
        del model  # the same weights again (seeded, or the same file), in fp32
        fp32_model, fp32_cfg = _gfrnet_prepared(opts, "fp32", config)
        result["psnr_db"] = psnr_db(out[:1], forward(fp32_model, fp32_cfg, most_frontal(pool_list), 1))
    return result


# --- the driver ---------------------------------------------------------------------------------------


def _worker_cmd(args: argparse.Namespace, row: str, paths: dict[str, Path | None]) -> list[str]:
    cmd = [sys.executable, "-m", SELF, "--worker", row]
    cmd += ["--device", args.device, "--precision", args.precision, "--threads", str(args.threads)]
    cmd += ["--runs", str(args.runs), "--batch", str(args.batch), "--dmdnet-refs", str(args.dmdnet_refs)]
    for flag, key in (
        ("--dmdnet-weights", "dmdnet"),
        ("--asffnet-weights", "asffnet"),
        ("--gfrnet-weights", "gfrnet"),
        ("--dictionary-file", "dictionary"),
    ):
        if paths.get(key) is not None:
            cmd += [flag, str(paths[key])]
    return cmd


def _weights_label(args: argparse.Namespace, model: str) -> str:
    given = getattr(args, f"{model}_weights")
    if given is not None:
        return given.name
    return UNTRAINED if model == "gfrnet" else "fixture rule (not trained)"


def _run_json(cmd: list[str], what: str) -> dict:
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False, cwd=REPO)
    if proc.returncode != 0:
        raise RuntimeError(f"{what} failed (exit {proc.returncode}):\n{proc.stderr[-3000:]}")
    lines = proc.stdout.strip().splitlines()
    return json.loads(lines[-1]) if lines else {}


def _cell(text: str) -> str:
    return text.replace("|", "\\|")


def format_table(rows: Sequence[tuple[str, dict]], *, precision: str, cuda: bool) -> str:
    """The markdown table of ``(row name, worker result)`` pairs (a result may be ``{"error": …}``)."""
    check = "output check" if precision == "fp32" else f"PSNR {precision} vs fp32 (dB)"
    head = ["model", "what runs", "weights", "median s/face", "min s/face", "peak RSS MiB"]
    head += ["RSS after load MiB", *(["peak GPU MiB"] if cuda else []), check]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for name, r in rows:
        if "error" in r:
            cells = [name, _cell(r["error"]), *[""] * (len(head) - 2)]
            lines.append("| " + " | ".join(cells) + " |")
            continue
        batch = r.get("batch", 1)
        if precision == "fp32":
            diff = r.get("fixture_max_abs")
            bound = f"(tolerance {ASFFNET_MAX_ABS:.0e})"
            extra = "—" if diff is None else f"max \\|out − out.npy\\| {diff:.1e} {bound}"
        else:
            extra = f"{r['psnr_db']:.2f}" if "psnr_db" in r else "—"
        cells = [
            name,
            _cell(r["what"]),
            _cell(r["weights"]),
            f"{r['median_s'] / batch:.3f}",
            f"{r['min_s'] / batch:.3f}",
            f"{r['peak_rss_mb']:.0f}",
            f"{r['load_rss_mb']:.0f}",
            *([f"{r.get('peak_cuda_mb', float('nan')):.0f}"] if cuda else []),
            extra,
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _header(args: argparse.Namespace, describe: str) -> str:
    from celebref.hardware import cpu_model

    return (
        f"Restoration at 512×512 — CPU {cpu_model()}; {describe}; threads {args.threads}; "
        f"precision {args.precision}; torch {torch.__version__}; batch {args.batch}; "
        f"median of {args.runs} timed run(s) after one warm-up, each model in a fresh process"
    )


def _measure(args: argparse.Namespace, tmp: Path) -> list[tuple[str, dict]]:
    from benchmark import bench_dmdnet

    paths: dict[str, Path | None] = {
        "dmdnet": args.dmdnet_weights,
        "asffnet": args.asffnet_weights,
        "gfrnet": args.gfrnet_weights,
        "dictionary": tmp / "references.dict.pt",
    }
    results: list[tuple[str, dict]] = []
    for model in args.models:
        try:  # the fixture-rule checkpoints, written by child processes: this process stays small
            if model == "dmdnet" and paths["dmdnet"] is None:
                paths["dmdnet"] = tmp / "DMDNet_fixture_rule.pth"
                script = str(Path(bench_dmdnet.__file__).resolve())
                cmd = [sys.executable, script, "--worker", "weights", "--weights", str(paths["dmdnet"])]
                subprocess.run(cmd, check=True, cwd=REPO)
            if model == "asffnet512" and paths["asffnet"] is None:
                paths["asffnet"] = tmp / "ASFFNet512_fixture_rule.pth"
                cmd = [sys.executable, "-m", SELF, "--worker", "asffnet512-weights"]
                _run_json([*cmd, "--weights-out", str(paths["asffnet"])], "writing the ASFFNet512 weights")
        except (RuntimeError, subprocess.CalledProcessError) as exc:
            results += [(row, {"error": f"weights: {str(exc).splitlines()[0]}"}) for row in ROWS[model]]
            continue
        for row in ROWS[model]:
            print(f"measuring {row} …", file=sys.stderr, flush=True)
            try:
                if row == "dmdnet-cached":  # the dictionary comes from another process, as in bench_dmdnet
                    given = {"dmdnet_weights": paths["dmdnet"], "dictionary_file": paths["dictionary"]}
                    ns = _dmdnet_namespace(argparse.Namespace(**{**vars(args), **given}), "savedict")
                    bench_dmdnet._spawn(ns, "savedict", args.batch, paths["dmdnet"])
                r = _run_json(_worker_cmd(args, row, paths), row)
                r["batch"] = args.batch
                r["weights"] = _weights_label(args, model.removesuffix("512"))
                if args.asffnet_weights is not None:  # the fixture's output is that of its own weights
                    r.pop("fixture_max_abs", None)
            except RuntimeError as exc:
                print(exc, file=sys.stderr)
                r = {"error": f"failed: {str(exc).strip().splitlines()[-1]}"}
            results.append((row, r))
    return results


def _worker_main(opts: argparse.Namespace) -> None:
    if opts.worker == "asffnet512-weights":
        _write_asffnet_fixture_weights(opts.weights_out)
        print(json.dumps({"weights": str(opts.weights_out)}))
        return
    if opts.worker == "asffnet512":
        result = asffnet_worker(opts)
    elif opts.worker == "gfrnet":
        result = gfrnet_worker(opts)
    else:
        result = dmdnet_worker(opts, cached=opts.worker == "dmdnet-cached")
    print(json.dumps(result))


def _existing(path: str) -> Path:
    p = Path(path)
    if not p.is_file():
        raise argparse.ArgumentTypeError(f"no such file: {p}")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--models", nargs="+", default=list(MODELS), choices=MODELS)
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    parser.add_argument("--precision", default="fp32", choices=("fp32", "bf16"))
    parser.add_argument("--batch", type=int, default=1, help="faces per call (the LQ face repeated)")
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    parser.add_argument("--runs", type=int, default=5, help="timed runs per model after one warm-up")
    parser.add_argument("--dmdnet-refs", type=int, default=8, help="references in DMDNet's cached dictionary")
    for name, what in (
        ("dmdnet", "official DMDNet.pth (default: the fixture rule)"),
        ("asffnet", "official-layout ASFFNet512.pth (default: the fixture rule)"),
        ("gfrnet", "GFRNet generator.pth trained here (default: untrained, timing only)"),
    ):
        parser.add_argument(f"--{name}-weights", type=_existing, default=None, metavar="PATH", help=what)
    workers = (*WORKERS, "asffnet512-weights")
    parser.add_argument("--worker", default=None, choices=workers, help=argparse.SUPPRESS)
    parser.add_argument("--dictionary-file", type=Path, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--weights-out", type=Path, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.batch < 1 or args.runs < 1 or args.threads < 1:
        parser.error("--batch, --runs and --threads must be >= 1")
    if args.worker:
        _worker_main(args)
        return 0

    from celebref.hardware import UnsupportedDevice, UnsupportedPrecision, capabilities

    try:
        caps = capabilities(args.device)
        caps.require(args.precision)
    except (UnsupportedDevice, UnsupportedPrecision) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    load = os.getloadavg() if hasattr(os, "getloadavg") else None
    with tempfile.TemporaryDirectory() as tmp:
        results = _measure(args, Path(tmp))
    print(_header(args, caps.describe()))
    print()
    print(format_table(results, precision=args.precision, cuda=caps.device != "cpu"))
    if load is not None:
        after = os.getloadavg()
        print()
        print(
            f"load average before {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}, after {after[0]:.2f} "
            f"{after[1]:.2f} {after[2]:.2f}"
        )
    return 1 if any("error" in r for _, r in results) else 0


if __name__ == "__main__":
    sys.exit(main())
