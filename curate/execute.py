"""Running the per-photo work of curation into the analysis cache, on local processes or on Ray Data.

Every job is ``(key, *args)``; the process that computes a job writes its result to the job's
:class:`~curate.cache.ResultStore` itself, a ``started`` line first and the record once done. Nothing
finished is lost when the stage is killed, and a job is redone only if it was in flight. The two backends
run the same job functions, so their results are the same records.

- ``local``: a pool of ``workers`` spawned processes (``workers == 1`` runs in this process).
- ``ray``: ``map_batches`` over a Ray Dataset of the jobs, on a local Ray with ``workers`` CPUs or on the
  cluster at ``ray_address``. On a cluster the curate output folder must be shared storage: workers write
  to it. Needs the ``ray`` extra (``pip install -e ".[ray]"``).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from multiprocessing import get_context
from pathlib import Path
from typing import Any

import numpy as np

from celebref.images import write_png
from curate.analyze import align_photo, aligned_record, analysis_record, analyze_photo
from curate.cache import JournalWriter
from curate.dataset import write_landmarks
from faces.analysis import FaceAnalyzer, FaceAnalyzerConfig, build_face_analyzer

__all__ = ["Backend", "analyse_job", "align_job", "aligned_files", "check_backend", "run_jobs", "BACKENDS"]

BACKENDS = ("local", "ray")
# A Ray task analyses this many photos before its results become a shard.
RAY_BATCH = 16


@dataclass(frozen=True)
class Backend:
    """Where per-photo jobs run: ``kind`` is ``local`` or ``ray``."""

    kind: str = "local"
    workers: int = 2
    ray_address: str | None = None


_WRITERS: dict[Path, JournalWriter] = {}


def _writer(store: Path) -> JournalWriter:
    if store not in _WRITERS:
        _WRITERS[store] = JournalWriter(store)
    return _WRITERS[store]


def close_writers() -> None:
    """Turn this process's journals into shards (before anyone compacts the stores)."""
    while _WRITERS:
        _WRITERS.popitem()[1].close()


def analyse_job(
    key: str,
    path: str,
    analyzer: FaceAnalyzer,
    *,
    store: Path,
    min_face: int,
    min_sharpness: float,
    sharpness_size: int,
) -> str:
    """Analyse the raw photo at ``path`` and record the result under ``key`` (its sha256)."""
    writer = _writer(store)
    writer.started(key)
    analysis = analyze_photo(
        Path(path), analyzer, min_face=min_face, min_sharpness=min_sharpness, sharpness_size=sharpness_size
    )
    writer.finished(key, analysis_record(analysis))
    return key


def aligned_files(store: Path, key: str) -> tuple[Path, Path]:
    """Where the aligned image of job ``key`` and its landmarks live inside the alignment store."""
    base = store / "images" / key
    return base.with_suffix(".png"), base.with_suffix(".landmarks.txt")


def align_job(
    key: str, path: str, landmarks: list[float], analyzer: FaceAnalyzer, *, store: Path, size: int
) -> str:
    """Align one face of the photo at ``path``; its PNG and landmark file go into the store before the
    record, so a finished record always has its files."""
    writer = _writer(store)
    writer.started(key)
    points = np.asarray(landmarks, dtype=np.float64).reshape(68, 2)
    aligned = align_photo(Path(path), points, analyzer, size=size)
    if aligned.image is not None and aligned.landmarks is not None:
        image_path, landmarks_path = aligned_files(store, key)
        image_path.parent.mkdir(parents=True, exist_ok=True)
        write_png(image_path, aligned.image)
        write_landmarks(landmarks_path, aligned.landmarks)
    writer.finished(key, aligned_record(aligned))
    return key


_WORKER_ANALYZER: FaceAnalyzer | None = None


def _init_worker(config: FaceAnalyzerConfig) -> None:
    global _WORKER_ANALYZER
    _WORKER_ANALYZER = build_face_analyzer(config)


def _call(args: tuple[Callable[..., str], tuple, dict]) -> str:
    fn, job, kwargs = args
    assert _WORKER_ANALYZER is not None
    return fn(*job, _WORKER_ANALYZER, **kwargs)


def _run_local(
    fn: Callable[..., str], jobs: Sequence[tuple], config: FaceAnalyzerConfig, workers: int, kwargs: dict
) -> Iterator[str]:
    calls = [(fn, tuple(job), kwargs) for job in jobs]
    if workers == 1 or len(calls) <= 1:
        _init_worker(config)
        try:
            yield from map(_call, calls)
        finally:
            close_writers()
        return
    with get_context("spawn").Pool(workers, initializer=_init_worker, initargs=(config,)) as pool:
        # Unordered: a finished job is recorded by its worker anyway, and nothing waits on a slow photo.
        yield from pool.imap_unordered(_call, calls, chunksize=1)


class _RayJobs:
    """A Ray Data actor: builds the analyzer once, runs a batch of jobs, shards their results."""

    def __init__(self, fn: Callable[..., str], config: FaceAnalyzerConfig, kwargs: dict) -> None:
        self.fn, self.kwargs = fn, kwargs
        self.analyzer = build_face_analyzer(config)

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        keys = []
        try:
            for job in batch["job"]:
                keys.append(self.fn(*json.loads(job), self.analyzer, **self.kwargs))
        finally:
            close_writers()  # this actor may live on into another stage: leave no open journal
        return {"key": np.asarray(keys, dtype=object)}


def _import_ray() -> Any:
    try:
        import ray
        import ray.data  # noqa: F401
    except ImportError as exc:
        raise ImportError(
            "curate.backend 'ray' needs Ray Data: install the 'ray' extra (pip install -e \".[ray]\")"
        ) from exc
    return ray


def _run_ray(
    fn: Callable[..., str], jobs: Sequence[tuple], config: FaceAnalyzerConfig, backend: Backend, kwargs: dict
) -> Iterator[str]:
    ray = _import_ray()
    started_here = not ray.is_initialized()
    if started_here:
        if backend.ray_address is None:
            ray.init(num_cpus=backend.workers, include_dashboard=False, log_to_driver=False)
        else:
            ray.init(address=backend.ray_address, log_to_driver=False)
    try:
        # Jobs travel as JSON text: plain strings and floats, exact, whatever Arrow makes of mixed tuples.
        dataset = ray.data.from_items([{"job": json.dumps(list(job))} for job in jobs])
        keys = dataset.map_batches(
            _RayJobs,
            fn_constructor_args=(fn, config, kwargs),
            batch_size=RAY_BATCH,
            compute=ray.data.ActorPoolStrategy(size=backend.workers),
            num_cpus=1,
        )
        for row in keys.iter_rows():
            yield str(row["key"])
    finally:
        if started_here:
            ray.shutdown()


def check_backend(backend: Backend) -> None:
    """Raise now, before any work, if ``backend`` is unknown or its library is not installed."""
    if backend.kind not in BACKENDS:
        raise ValueError(f"unknown curate backend {backend.kind!r}; allowed: {', '.join(BACKENDS)}")
    if backend.kind == "ray":
        _import_ray()


def run_jobs(
    fn: Callable[..., str],
    jobs: Sequence[tuple],
    config: FaceAnalyzerConfig,
    backend: Backend,
    **kwargs: Any,
) -> Iterator[str]:
    """Run ``fn(*job, analyzer, **kwargs)`` for every job on ``backend``; yields each job's key as it ends
    (in no particular order)."""
    check_backend(backend)
    if not jobs:
        return iter(())
    if backend.kind == "ray":
        return _run_ray(fn, jobs, config, backend, kwargs)
    return _run_local(fn, jobs, config, backend.workers, kwargs)
