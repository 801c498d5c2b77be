"""Run every configured method on the degraded test sets and score it.

``python -m benchmark.evaluate --params params.yaml --dataset data/celebref --lq data/lq --results results
--metrics metrics``

For each method × task: restore every test image (batched) into
``<results>/<method>/<task>/<identity>/<n>.png``, score it against the ground truth, write the per-image
scores to ``<metrics>/per_image/<method>_<task>.csv``, and the run's record in two parts
(:func:`write_summary`):

- ``<metrics>/summary.json``: the numbers only, ``{method: {task: {metric: value}}}`` (a metric that
  could not be computed is absent); ``<metrics>/scores/<task>/<method slug>.json`` holds the same numbers,
  one small ``{metric: value}`` file per method and task: the DVC metrics, so that ``dvc metrics show``
  prints one short row per method and task;
- ``<metrics>/run.json``: everything else: N, each metric's label and direction, the conventions, every
  unavailable metric or method with its reason, for network methods the checkpoint they ran (path,
  format, a one-line description and, for a checkpoint with a training ``summary.json`` beside it, that
  run's variant and budget), the paper rows each method claims (:func:`benchmark.methods.method_infos`)
  and the stage config.

The report reads these two files and nothing else (:func:`benchmark.report.load_summary` joins them).
Network metrics are built once per run and reset between tasks. Outputs are written atomically.
"""

from __future__ import annotations

import copy
import json
import math
import shutil
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml
from tqdm import tqdm

from benchmark.evaluate_config import METRIC_KEYS, EvaluateConfig
from benchmark.methods import (
    CheckpointInfo,
    Method,
    TestCase,
    UnavailableMethod,
    method_infos,
    method_slug,
    try_build_method,
)
from benchmark.metrics.registry import Metric, Unavailable, try_build_metric
from celebref.atomic import atomic_dir, atomic_write_text
from celebref.cli import EXIT_OK, ArgumentParser, bad_input_exits
from celebref.images import read_image, write_png
from celebref.params import load_stage_config
from curate.dataset import CelebRefHQ, read_landmarks
from faces.analysis import build_face_analyzer
from faces.types import IdentityEmbedder
from faces.weights import WeightsNotFoundError

__all__ = [
    "build_test_cases",
    "build_metrics",
    "metric_label",
    "conventions",
    "evaluate_method",
    "TaskResult",
    "run",
    "summary_line",
    "split_summary",
    "write_summary",
    "SUMMARY_NAME",
    "RUN_NAME",
    "SCORES_DIR",
    "PER_IMAGE_DIR",
    "DEGRADATION_COLUMNS",
    "main",
]

#: The numbers: ``{method: {task: {metric: value}}}``.
SUMMARY_NAME = "summary.json"
#: Everything else about the run (labels, directions, N, conventions, reasons, checkpoints, config).
RUN_NAME = "run.json"
#: The numbers again, one ``<task>/<method slug>.json`` per method and task (the DVC metrics).
SCORES_DIR = "scores"
PER_IMAGE_DIR = "per_image"
CONFIG_NAME = "evaluate_config.yaml"
#: Columns of ``degradations.csv`` copied into the per-image tables (what each input went through).
DEGRADATION_COLUMNS = ("sigma_blur", "scale", "sigma_noise", "jpeg_quality")

_HIGHER_IS_BETTER = {"psnr": True, "ssim": True, "lpips": False, "fid": False, "id": True}


def metric_label(key: str, config: EvaluateConfig) -> str:
    """Display name of a metric key as the metric classes name themselves (``PSNR-Y``, ``Id(dlib)``)."""
    if key in ("psnr", "ssim"):
        return key.upper() + ("-Y" if config.y_channel else "")
    if key == "id":
        return f"Id({config.faces.embedder})"
    if key in METRIC_KEYS:
        return key.upper()
    raise ValueError(f"unknown metric {key!r}; allowed: {', '.join(METRIC_KEYS)}")


def conventions(config: EvaluateConfig, embedder_name: str) -> dict[str, str]:
    """How each metric is computed, for the summary and the report header."""
    space = "BT.601 Y channel (BasicSR's rgb2ycbcr, not rounded)" if config.y_channel else "RGB"
    crop = f"{config.crop_border}-pixel border cropped" if config.crop_border else "no border crop"
    return {
        "psnr": f"{space} on 0-255, float64, {crop}; peak 255, mean of per-image PSNR",
        "ssim": (
            f"{space} on 0-255, float64, {crop}; Gaussian window 11, sigma 1.5, C1=(0.01*255)^2, "
            "C2=(0.03*255)^2, valid region, mean over channels then images (BasicSR's convention)"
        ),
        "lpips": "LPIPS v0.1, AlexNet trunk, RGB mapped to [-1, 1], mean of per-image distances",
        "fid": (
            "pytorch-fid InceptionV3 pool3 (2048-d) features of the restored set against the paired ground "
            "truth of the same test set; N pairs; FID is biased upwards at small N"
        ),
        "id": (
            f"cosine similarity of {embedder_name} identity embeddings of restored vs ground truth "
            "(ground-truth landmarks locate the face in both); mean over images"
        ),
    }


def build_test_cases(dataset_root: str | Path, lq_root: str | Path, split: str, task: str) -> list[TestCase]:
    """One :class:`TestCase` per image of ``<dataset_root>/<split>``, its LQ input in ``<lq>/<split>_<task>``.

    Raises:
        ValueError: the split holds no image (empty test set).
        FileNotFoundError: the LQ set or some of its files are missing (the message gives the first few
            and the error ``degradations.csv`` recorded for them).
    """
    dataset = CelebRefHQ(dataset_root, split)
    if len(dataset) == 0:
        raise ValueError(
            f"empty test set: no images in {Path(dataset_root) / split} (expected <identity>/<n>.png)"
        )
    lq_dir = Path(lq_root) / f"{split}_{task}"
    if not lq_dir.is_dir():
        raise FileNotFoundError(
            f"LQ test set not found: {lq_dir} (build it with `python -m degrade --dataset {dataset_root} "
            f"--split {split} --out {lq_root}`)"
        )
    cases = [
        TestCase(
            image_id=f"{rec.identity}/{rec.index}",
            identity=rec.identity,
            task=task,
            lq_path=lq_dir / rec.identity / f"{rec.index}.png",
            gt=rec,
            references=dataset.references_for(rec),
        )
        for rec in dataset.records
    ]
    missing = [c for c in cases if not c.lq_path.is_file()]
    if missing:
        recorded = _degradation_table(lq_dir)
        notes = []
        for case in missing[:5]:
            error = ""
            if recorded is not None and case.image_id in recorded.index:
                error = str(recorded.loc[case.image_id].get("error", "") or "")
            notes.append(f"{case.lq_path}" + (f" (degrade recorded: {error})" if error else ""))
        raise FileNotFoundError(
            f"{len(missing)} of {len(cases)} LQ inputs missing in {lq_dir}: {'; '.join(notes)}"
        )
    return cases


def _degradation_table(lq_dir: Path) -> pd.DataFrame | None:
    path = lq_dir / "degradations.csv"
    if not path.is_file():
        return None
    table = pd.read_csv(path, dtype={"image_id": str})
    return table.set_index("image_id") if "image_id" in table.columns else None


def _check_embedder(embedder: IdentityEmbedder) -> None:
    """Resolve a lazily loaded embedder's weights now, so absence is known before any work is done."""
    resolve = getattr(embedder, "resolve", None)
    if callable(resolve):
        resolve()


def build_metrics(
    config: EvaluateConfig, *, embedder: IdentityEmbedder | None = None
) -> dict[str, Metric | Unavailable]:
    """Build every configured metric once (key → metric, or :class:`Unavailable` with the reason).

    Args:
        config: the stage config (conventions, devices, weights).
        embedder: the Id metric's embedder; default: ``build_face_analyzer(config.faces).embedder``.
    """
    w = config.weights
    options: dict[str, dict[str, Any]] = {
        "psnr": {"crop_border": config.crop_border, "y_channel": config.y_channel},
        "ssim": {"crop_border": config.crop_border, "y_channel": config.y_channel},
        "lpips": {
            "alexnet_path": w.lpips_alexnet,
            "linear_path": w.lpips_linear,
            "cache_dir": w.dir,
            "allow_download": w.allow_download,
            "device": config.device,
        },
        "fid": {
            "weights_path": w.fid_inception,
            "cache_dir": w.dir,
            "allow_download": w.allow_download,
            "device": config.device,
            "batch_size": config.batch_size,
        },
    }
    built: dict[str, Metric | Unavailable] = {}
    for key in config.metrics:
        if key == "id":
            try:
                emb = embedder if embedder is not None else build_face_analyzer(config.faces).embedder
                _check_embedder(emb)
            except WeightsNotFoundError as exc:
                built[key] = Unavailable(key, str(exc))
                continue
            built[key] = try_build_metric("id", embedder=emb)
        else:
            built[key] = try_build_metric(key, **options[key])
    return built


@dataclass(frozen=True)
class TaskResult:
    """Scores of one method on one task.

    Attributes:
        n: number of images.
        metrics: key → summary entry (label, value, higher_is_better, n, available, reason).
        per_image: one row per image: ids, per-image scores by label, degradation parameters.
        seconds: wall time of the task: reading inputs, restoring, writing outputs and scoring.
    """

    n: int
    metrics: dict[str, dict[str, Any]]
    per_image: pd.DataFrame
    seconds: float


def _json_float(value: float) -> float | None:
    return float(value) if math.isfinite(value) else None


def _check_output(method: Method, case: TestCase, image: Any, gt_shape: tuple[int, ...]) -> np.ndarray:
    if not isinstance(image, np.ndarray) or image.dtype != np.uint8:
        kind = getattr(image, "dtype", type(image).__name__)
        raise ValueError(f"method {method.name!r} returned {kind} for {case.image_id}; expected RGB uint8")
    if image.shape != gt_shape:
        raise ValueError(
            f"method {method.name!r}: result for {case.image_id} ({case.task}) has shape {image.shape}, "
            f"ground truth has {gt_shape}"
        )
    return image


def _read_gt(case: TestCase, size: int) -> np.ndarray:
    gt = read_image(case.gt.image_path)
    if gt.shape != (size, size, 3):
        raise ValueError(
            f"ground truth {case.gt.image_path} has shape {gt.shape}, expected ({size}, {size}, 3)"
        )
    return gt


def evaluate_method(
    method: Method,
    cases: Sequence[TestCase],
    metrics: Mapping[str, Metric | Unavailable],
    out_dir: Path,
    *,
    size: int = 512,
    batch_size: int = 4,
    labels: Mapping[str, str] | None = None,
    degradations: pd.DataFrame | None = None,
) -> TaskResult:
    """Restore ``cases`` with ``method`` into ``out_dir/<identity>/<n>.png`` and score them.

    Available metrics are reset first, then updated batch by batch. A metric whose ``compute`` fails
    (e.g. FID with fewer than 2 images) is reported as unavailable for this task with the error.

    Raises:
        ValueError: a result that is not RGB uint8 of the ground truth's shape.
    """
    if not cases:
        raise ValueError("empty test set: no cases to evaluate")
    labels = dict(labels or {})
    active = {k: m for k, m in metrics.items() if isinstance(m, Metric)}
    for metric in active.values():
        metric.reset()
    task = cases[0].task
    start = time.perf_counter()
    with tqdm(total=len(cases), desc=f"evaluate {method.name} {task}", unit="img") as bar:
        for lo in range(0, len(cases), batch_size):
            batch = list(cases[lo : lo + batch_size])
            lq = [read_image(c.lq_path) for c in batch]
            gt = [_read_gt(c, size) for c in batch]
            restored = method.restore(batch, lq)
            if len(restored) != len(batch):
                raise ValueError(f"method {method.name!r} returned {len(restored)} images for {len(batch)}")
            restored = [
                _check_output(method, c, r, g.shape) for c, r, g in zip(batch, restored, gt, strict=True)
            ]
            for case, image in zip(batch, restored, strict=True):
                write_png(out_dir / case.identity / f"{case.index}.png", image)
            ids = [c.image_id for c in batch]
            landmarks = [read_landmarks(c.gt.landmarks_path) for c in batch] if "id" in active else None
            for metric in active.values():
                metric.update(ids, restored, gt, landmarks)
            bar.update(len(batch))
    seconds = time.perf_counter() - start

    rows = pd.DataFrame(
        {
            "image_id": [c.image_id for c in cases],
            "identity": [c.identity for c in cases],
            "index": [c.index for c in cases],
            "task": task,
            "method": method.name,
        }
    )
    summary: dict[str, dict[str, Any]] = {}
    for key, metric in metrics.items():
        label = labels.get(key, key)
        if isinstance(metric, Unavailable):
            summary[key] = {
                "label": label,
                "available": False,
                "reason": metric.reason,
                "higher_is_better": _HIGHER_IS_BETTER.get(key, True),
            }
            continue
        try:
            result = metric.compute()
        except ValueError as exc:
            summary[key] = {
                "label": metric.name,
                "available": False,
                "reason": str(exc),
                "higher_is_better": metric.higher_is_better,
            }
            continue
        entry: dict[str, Any] = {
            "label": result.name,
            "available": True,
            "value": _json_float(result.value),
            "higher_is_better": result.higher_is_better,
            "n": result.n,
        }
        if not math.isfinite(result.value):
            entry["note"] = f"value is {result.value}"
        summary[key] = entry
        if result.per_image:
            rows[result.name] = [result.per_image[c.image_id] for c in cases]
    if degradations is not None:
        for column in DEGRADATION_COLUMNS:
            if column in degradations.columns:
                rows[column] = [degradations[column].get(c.image_id, np.nan) for c in cases]
    return TaskResult(n=len(cases), metrics=summary, per_image=rows, seconds=seconds)


def run(
    config: EvaluateConfig,
    dataset_root: str | Path,
    lq_root: str | Path,
    results_root: str | Path,
    metrics_root: str | Path,
    *,
    embedder: IdentityEmbedder | None = None,
) -> dict[str, Any]:
    """Evaluate every method of ``config`` on every task; write results, per-image CSVs and the summary.

    Args:
        config: the ``evaluate`` section.
        dataset_root: the built dataset (``<split>/<identity>/<n>.png`` + landmarks).
        lq_root: the degraded test sets (``<split>_<task>/<identity>/<n>.png``).
        results_root: restored images go to ``<results_root>/<method>/<task>/``.
        metrics_root: ``per_image/<method>_<task>.csv``, ``summary.json``, ``scores/`` and ``run.json``
            go here (:func:`write_summary`).
        embedder: the Id metric's embedder (default: from ``config.faces``); tests pass a stand-in.

    Returns:
        The whole record: ``run.json`` with each computed metric's ``value`` in its entry (what
        :func:`benchmark.report.load_summary` reads back).

    Raises:
        ValueError: unknown method / metric names (from the config), an empty test set, results whose
            size differs from the ground truth.
        FileNotFoundError: missing dataset, LQ inputs, or a ``folder:`` method's results.
    """
    if config.num_threads is not None:
        import torch

        torch.set_num_threads(config.num_threads)
    results_root, metrics_root = Path(results_root), Path(metrics_root)
    cases_by_task = {t: build_test_cases(dataset_root, lq_root, config.split, t) for t in config.tasks}
    degradations = {t: _degradation_table(Path(lq_root) / f"{config.split}_{t}") for t in config.tasks}
    metrics = build_metrics(config, embedder=embedder)
    embedder_name = config.faces.embedder
    id_metric = metrics.get("id")
    if isinstance(id_metric, Metric):
        embedder_name = id_metric.name[len("Id(") : -1]
    labels = {k: m.name if isinstance(m, Metric) else metric_label(k, config) for k, m in metrics.items()}

    options = config.method_options()
    built = {name: try_build_method(name, options) for name in config.methods}  # fail early, load once
    infos = method_infos(config.methods)  # paper rows; one Table 3 row per checkpoint
    methods_summary: dict[str, Any] = {}
    tables: dict[str, pd.DataFrame] = {}
    for name, method in built.items():
        slug, info = method_slug(name), infos[name]
        checkpoint = getattr(method, "checkpoint", None)  # the weights a network method runs
        entry: dict[str, Any] = {
            "slug": slug,
            "description": info.description,
            "uses_references": info.uses_references,
            "paper_rows": {str(k): v for k, v in (info.paper_rows or {}).items()},
            "checkpoint": checkpoint.to_dict() if isinstance(checkpoint, CheckpointInfo) else None,
        }
        if isinstance(method, UnavailableMethod):
            entry.update(available=False, reason=method.reason, tasks={})
            for task in config.tasks:  # no stale images of an earlier run under this name
                shutil.rmtree(results_root / slug / task, ignore_errors=True)
            methods_summary[name] = entry
            continue
        entry.update(available=True, reason=None, tasks={})
        for task in config.tasks:
            final = results_root / slug / task
            with atomic_dir(final) as tmp:
                result = evaluate_method(
                    method,
                    cases_by_task[task],
                    metrics,
                    tmp,
                    size=config.size,
                    batch_size=config.batch_size,
                    labels=labels,
                    degradations=degradations[task],
                )
            csv_name = f"{slug}_{task}.csv"
            tables[csv_name] = result.per_image
            entry["tasks"][task] = {
                "n": result.n,
                "seconds": round(result.seconds, 3),
                "results_dir": str(final),
                "per_image_csv": f"{PER_IMAGE_DIR}/{csv_name}",
                "metrics": result.metrics,
            }
            take_notes = getattr(method, "take_notes", None)
            if callable(take_notes):  # e.g. how many inputs needed a landmark fallback in this task
                entry["tasks"][task]["notes"] = take_notes()
        methods_summary[name] = entry

    with atomic_dir(metrics_root / PER_IMAGE_DIR) as tmp:
        for csv_name, frame in tables.items():
            frame.to_csv(tmp / csv_name, index=False)
    summary: dict[str, Any] = {
        "split": config.split,
        "dataset": str(dataset_root),
        "lq": str(lq_root),
        "results": str(results_root),
        "size": config.size,
        "tasks": list(config.tasks),
        "n": {t: len(c) for t, c in cases_by_task.items()},
        "embedder": embedder_name,
        "metrics": [
            {
                "key": key,
                "label": labels[key],
                "higher_is_better": (m.higher_is_better if isinstance(m, Metric) else _HIGHER_IS_BETTER[key]),
                "available": isinstance(m, Metric),
                "reason": m.reason if isinstance(m, Unavailable) else None,
            }
            for key, m in metrics.items()
        ],
        "conventions": {k: v for k, v in conventions(config, embedder_name).items() if k in metrics},
        "methods": methods_summary,
        "config": config.model_dump(mode="json"),
    }
    write_summary(summary, metrics_root)
    atomic_write_text(
        results_root / CONFIG_NAME, yaml.safe_dump(config.model_dump(mode="json"), sort_keys=False)
    )
    return summary


def split_summary(record: Mapping[str, Any]) -> tuple[dict[str, dict[str, dict[str, float]]], dict[str, Any]]:
    """Split an evaluation record (what :func:`run` returns) into its numbers and the rest.

    Returns:
        ``(numbers, context)``: ``numbers[method][task][metric]`` is every value that was computed (a
        metric that is unavailable or not finite is left out; its reason stays in the context), and
        ``context`` is a copy of the record without the values.
    """
    context = copy.deepcopy(dict(record))
    numbers: dict[str, dict[str, dict[str, float]]] = {}
    for name, entry in context["methods"].items():
        for task, task_entry in (entry.get("tasks") or {}).items():
            for key, metric in task_entry["metrics"].items():
                value = metric.pop("value", None)
                if value is not None:
                    numbers.setdefault(name, {}).setdefault(task, {})[key] = float(value)
    return numbers, context


def _json_text(data: Any) -> str:
    return json.dumps(data, indent=2, allow_nan=False) + "\n"


def write_summary(record: Mapping[str, Any], metrics_root: str | Path) -> None:
    """Write ``record`` as ``scores/<task>/<slug>.json``, ``run.json`` and ``summary.json`` (in that
    order, each atomically) under ``metrics_root``; see the module docstring for what each holds."""
    numbers, context = split_summary(record)
    root = Path(metrics_root)
    with atomic_dir(root / SCORES_DIR) as tmp:  # replaced whole: no file of a method left out this time
        for name, tasks in numbers.items():
            slug = context["methods"][name].get("slug") or method_slug(name)
            for task, values in tasks.items():
                (tmp / task).mkdir(exist_ok=True)
                (tmp / task / f"{slug}.json").write_text(_json_text(values), encoding="utf-8")
    atomic_write_text(root / RUN_NAME, _json_text(context))
    atomic_write_text(root / SUMMARY_NAME, _json_text(numbers))


def summary_line(summary: Mapping[str, Any], path: str | Path) -> str:
    """One line of counts for the end of a run."""
    methods = summary["methods"]
    ok = [m for m, e in methods.items() if e["available"]]
    off = [m for m, e in methods.items() if not e["available"]]
    n = ", ".join(f"{t}: {k}" for t, k in summary["n"].items())
    missing = [m["key"] for m in summary["metrics"] if not m["available"]]
    return (
        f"evaluate: {len(ok)} method(s) x {len(summary['tasks'])} task(s) scored ({n} images, split "
        f"{summary['split']}); unavailable methods: {', '.join(off) or 'none'}; unavailable metrics: "
        f"{', '.join(missing) or 'none'} -> {path}"
    )


def main(argv: list[str] | None = None) -> int:
    """The stage's CLI. Exit codes: 0 the summary is written (a method or metric that could not run is in it
    with its reason); 2 bad settings, arguments or inputs (a missing test set), nothing written."""
    parser = ArgumentParser(
        prog="python -m benchmark.evaluate",
        description="Run the methods on the degraded test sets and score them.",
    )
    parser.add_argument("--params", default="params.yaml", help="params file (its 'evaluate' section)")
    parser.add_argument("--dataset", required=True, help="dataset root holding <split>/<identity>/<n>.png")
    parser.add_argument("--lq", required=True, help="degraded test sets root holding <split>_<task>/")
    parser.add_argument("--results", required=True, help="restored images go to <results>/<method>/<task>/")
    parser.add_argument("--metrics", required=True, help="per_image/, summary.json, run.json, scores/")
    args = parser.parse_args(argv)
    with bad_input_exits():  # everything the run would refuse at its start, before it writes
        config = load_stage_config(EvaluateConfig, "evaluate", args.params)
        for task in config.tasks:
            build_test_cases(args.dataset, args.lq, config.split, task)
    summary = run(config, args.dataset, args.lq, args.results, args.metrics)
    print(summary_line(summary, Path(args.metrics) / SUMMARY_NAME))
    return EXIT_OK


if __name__ == "__main__":
    raise SystemExit(main())
