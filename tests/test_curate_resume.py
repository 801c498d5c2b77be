"""The curate stage killed part-way (SIGKILL, the whole process group) resumes from its analysis cache.

A killed run and a second run together must write exactly the bytes an uninterrupted run writes, and the
second run may redo only the photos that were being analysed when the first was killed.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import yaml

from curate.build import CACHE_DIR, analysis_cache
from curate.cache import ResultStore
from curate.config import CurateConfig

REPO = Path(__file__).resolve().parent.parent
CONFIG = {
    "min_face": 64,
    "min_sharpness": 0.0,
    "min_images": 1,
    "split": {"train": 1, "test": 1},
    "workers": 2,
}
STEP_LINE = re.compile(
    r"curate: (?P<what>[a-z ]+): (?P<cached>\d+) of (?P<total>\d+) cached, "
    r"(?P<in_flight>\d+) in flight when a run stopped, computing (?P<computing>\d+)"
)


def _write_params(path: Path, **changes: object) -> Path:
    path.write_text(yaml.safe_dump({"curate": {**CONFIG, **changes}}))
    return path


def _command(params: Path, raw: Path, out: Path) -> list[str]:
    return [sys.executable, "-m", "curate", "--params", str(params), "--raw", str(raw), "--out", str(out)]


def _curate(params: Path, raw: Path, out: Path) -> dict[str, dict[str, int]]:
    """Run the stage to the end; returns its per-step cache lines by step."""
    done = subprocess.run(_command(params, raw, out), cwd=REPO, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    steps = {}
    for match in STEP_LINE.finditer(done.stdout):
        steps[match["what"]] = {k: int(v) for k, v in match.groupdict().items() if k != "what"}
    return steps


def _finished(store: ResultStore) -> int:
    return len(store.load().records)


def _kill_when(params: Path, raw: Path, out: Path, store: ResultStore, finished: int) -> None:
    """Start the stage and SIGKILL its process group once ``store`` holds ``finished`` records."""
    proc = subprocess.Popen(
        _command(params, raw, out),
        cwd=REPO,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,  # its own process group: the kill takes the workers with it
    )
    try:
        deadline = time.monotonic() + 300
        while _finished(store) < finished:
            assert proc.poll() is None, "the stage ended before it could be killed"
            assert time.monotonic() < deadline, "the stage made no progress"
            time.sleep(0.01)
        os.killpg(proc.pid, signal.SIGKILL)
    finally:
        proc.wait(timeout=60)
    assert proc.returncode == -signal.SIGKILL


def _dataset_files(root: Path) -> dict[str, bytes]:
    """Every file of a built dataset except its analysis cache, by relative path."""
    return {
        str(p.relative_to(root)): p.read_bytes()
        for p in sorted(root.rglob("*"))
        if p.is_file() and p.relative_to(root).parts[0] != CACHE_DIR
    }


@pytest.fixture(scope="module")
def reference(planted_raw: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """An uninterrupted run: its params and output."""
    folder = tmp_path_factory.mktemp("reference")
    params = _write_params(folder / "params.yaml")
    _curate(params, planted_raw, folder / "out")
    return params, folder / "out"


@pytest.mark.parametrize("phase", ["faces", "aligned"])
def test_killed_curate_resumes_and_writes_the_same_bytes(
    phase: str, planted_raw: Path, reference: tuple[Path, Path], tmp_path: Path
) -> None:
    params, reference_out = reference
    out = tmp_path / "out"
    stores = analysis_cache(out, CurateConfig(**CONFIG))
    store = stores.faces if phase == "faces" else stores.aligned
    _kill_when(params, planted_raw, out, store, finished=3)

    left = store.load()
    n_done, in_flight = len(left.records), set(left.in_flight)
    assert n_done >= 3
    assert len(in_flight) <= CONFIG["workers"], "at most one photo per worker is in flight"
    assert not (out / "manifest.parquet").exists(), "the dataset is only written once everything is done"

    steps = _curate(params, planted_raw, out)
    step = steps["analyse faces" if phase == "faces" else "align"]
    print(f"\n{phase}: killed with {n_done} done, {len(in_flight)} in flight; the rerun: {step}")
    # Only what was not finished is computed again: the photos in flight and those never started.
    assert step["cached"] == n_done
    assert step["in_flight"] == len(in_flight)
    assert step["computing"] == step["total"] - n_done
    if phase == "aligned":
        assert steps["analyse faces"]["computing"] == 0, "a finished analysis is never redone"
    assert _dataset_files(out) == _dataset_files(reference_out)


def _rerun(
    reference: tuple[Path, Path], raw: Path, tmp_path: Path, **changes: object
) -> tuple[Path, dict[str, dict[str, int]]]:
    """Curate again into a copy of the reference's output (its cache included) with changed params."""
    out = tmp_path / "out"
    subprocess.run(["cp", "-a", str(reference[1]), str(out)], check=True)
    stale = tmp_path / ".out.k1ll3d.tmp"  # what a run killed while writing the dataset leaves
    (stale / "train").mkdir(parents=True)
    steps = _curate(_write_params(tmp_path / "params.yaml", **changes), raw, out)
    assert not stale.exists()
    return out, steps


def test_thresholds_outside_the_analysis_reuse_the_cache(
    planted_raw: Path, reference: tuple[Path, Path], tmp_path: Path
) -> None:
    start = time.monotonic()
    out, steps = _rerun(reference, planted_raw, tmp_path, duplicate_hamming=4, split={"train": 1, "val": 1})
    seconds = time.monotonic() - start
    print(f"\nre-curated with a new duplicate threshold and split in {seconds:.1f} s: {steps}")
    assert steps["analyse faces"]["computing"] == 0 and steps["align"]["computing"] == 0
    assert steps["align"]["cached"] >= 1
    manifest = pd.read_parquet(out / "manifest.parquet")
    assert set(manifest["split"]) == {"train", "val"}


def test_changed_analysis_settings_start_a_new_cache(
    planted_raw: Path, reference: tuple[Path, Path], tmp_path: Path
) -> None:
    out, steps = _rerun(reference, planted_raw, tmp_path, min_face=65)
    assert steps["analyse faces"]["cached"] == 0
    assert steps["analyse faces"]["computing"] == steps["analyse faces"]["total"]
    # Only the current settings' cache is carried into the new output.
    kept = {p.name for p in (out / CACHE_DIR).iterdir()}
    current = analysis_cache(out, CurateConfig(**{**CONFIG, "min_face": 65}))
    assert kept == {current.faces.root.name, current.aligned.root.name}
