"""Fixed degraded test sets: ``<out>/<split>_<task>/<identity>/<n>.png`` plus ``degradations.csv``.

Each task (``x4``, ``x8``) fixes the scale and draws the other parameters of eq. 19 from the image's own
generator ``image_rng(seed, image_id)``, so the set is identical whatever the order or worker count.
The ×4 and ×8 sets of one image share blur σ, noise σ, JPEG quality and noise seed; only the scale differs.
"""

from __future__ import annotations

import multiprocessing as mp
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import yaml
from tqdm import tqdm

from celebref.atomic import atomic_dir, atomic_write_text
from celebref.images import ImageDecodeError, read_image, write_png
from curate.dataset import CelebRefHQ, FaceRecord
from degrade.config import DegradationRanges, DegradeConfig
from degrade.model import DegradationParams, apply, image_rng, sample_params

__all__ = ["image_id", "params_from_row", "TABLE_NAME", "TABLE_COLUMNS", "run"]

TABLE_NAME = "degradations.csv"
CONFIG_NAME = "degrade_config.yaml"
TABLE_COLUMNS = [
    "image_id",
    "identity",
    "file",
    "sigma_blur",
    "scale",
    "sigma_noise",
    "jpeg_quality",
    "seed",
    "status",
    "error",
]


def image_id(record: FaceRecord) -> str:
    """The id an image's draws derive from: ``<identity>/<n>``."""
    return f"{record.identity}/{record.index}"


def params_from_row(row: Mapping[str, Any]) -> DegradationParams:
    """Rebuild the :class:`DegradationParams` recorded in one row of ``degradations.csv``."""
    quality = row["jpeg_quality"]
    return DegradationParams(
        sigma_blur=float(row["sigma_blur"]),
        scale=float(row["scale"]),
        sigma_noise=float(row["sigma_noise"]),
        jpeg_quality=None if quality is None or pd.isna(quality) or quality == "" else int(quality),
        seed=int(row["seed"]),
    )


@dataclass(frozen=True)
class _Job:
    record: FaceRecord
    seed: int
    ranges: DegradationRanges
    size: int
    out_dir: Path


def _degrade_one(job: _Job) -> dict[str, Any]:
    """Draw, degrade and write one image; bad input becomes a ``failed`` row, never an exception."""
    record = job.record
    params = sample_params(image_rng(job.seed, image_id(record)), job.ranges)
    rel = f"{record.identity}/{record.index}.png"
    row: dict[str, Any] = {"image_id": image_id(record), "identity": record.identity, "file": rel}
    row.update(params.as_dict())
    try:
        gt = read_image(record.image_path)
        if gt.shape != (job.size, job.size, 3):
            raise ImageDecodeError(f"expected {job.size}x{job.size} RGB, got shape {gt.shape}")
        write_png(job.out_dir / rel, apply(gt, params))
    except ImageDecodeError as exc:
        row.update(status="failed", error=str(exc))
    else:
        row.update(status="ok", error="")
    return row


def _init_worker() -> None:
    import cv2

    cv2.setNumThreads(1)  # one process per core; results do not depend on thread counts


def _map(jobs: list[_Job], pool: Any | None) -> Iterator[dict[str, Any]]:
    if pool is None:
        return map(_degrade_one, jobs)
    return pool.imap(_degrade_one, jobs, chunksize=4)


def _write_task_config(path: Path, config: DegradeConfig, split: str, task: str) -> None:
    """The resolved config of one task (``workers`` left out: it does not change the outputs)."""
    record = {"split": split, "task": task, "scale": config.test_scales[task]}
    record.update(config.model_dump(mode="json", exclude={"workers"}))
    atomic_write_text(path, yaml.safe_dump(record, sort_keys=False))


def _build_task(
    records: Iterable[FaceRecord],
    config: DegradeConfig,
    split: str,
    task: str,
    out_dir: Path,
    pool: Any | None,
) -> pd.DataFrame:
    ranges = config.ranges.with_scale(config.test_scales[task])
    jobs = [_Job(rec, config.seed, ranges, config.size, out_dir) for rec in records]
    rows = list(tqdm(_map(jobs, pool), total=len(jobs), desc=f"degrade {split}_{task}", unit="img"))
    table = pd.DataFrame(rows, columns=TABLE_COLUMNS)
    table["jpeg_quality"] = table["jpeg_quality"].astype("Int64")
    with (out_dir / TABLE_NAME).open("w", encoding="utf-8", newline="") as fh:
        table.to_csv(fh, index=False)
    _write_task_config(out_dir / CONFIG_NAME, config, split, task)
    return table


def run(
    config: DegradeConfig, dataset_root: str | Path, out_root: str | Path, split: str = "test"
) -> dict[str, Path]:
    """Build one degraded set per task in ``config.test_scales`` from ``<dataset_root>/<split>``.

    Each set is written atomically to ``<out_root>/<split>_<task>/`` (replaced whole on success).
    With ``config.workers > 1`` the workers are spawned processes: call this from under
    ``if __name__ == "__main__":`` (as ``python -m degrade`` does), or they re-run the calling script.

    Returns:
        task name → output folder.
    """
    records = CelebRefHQ(dataset_root, split, with_references=False).records
    if not records:
        raise FileNotFoundError(f"no images in {Path(dataset_root) / split} (expected <identity>/<n>.png)")
    out_root = Path(out_root)
    outputs: dict[str, Path] = {}
    pool = (
        mp.get_context("spawn").Pool(config.workers, initializer=_init_worker) if config.workers > 1 else None
    )
    try:
        for task in config.test_scales:
            final = out_root / f"{split}_{task}"
            with atomic_dir(final) as tmp:
                table = _build_task(records, config, split, task, tmp, pool)
            n_ok = int((table["status"] == "ok").sum())
            print(f"degrade {split}_{task}: {n_ok} written, {len(table) - n_ok} failed -> {final}")
            outputs[task] = final
    finally:
        if pool is not None:
            pool.close()
            pool.join()
    return outputs
