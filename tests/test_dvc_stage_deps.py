"""The stages after ``curate`` depend on exactly the parts of ``data/celebref`` they read.

The project's ``dvc.yaml`` and ``params.yaml`` are copied into a fresh DVC repository, every dependency and
output is stood in for by a small file, and ``dvc commit`` records the pipeline as up to date. Then a
curate re-run that keeps the same images (another ``identity_threshold``: other rejection details, another
card and config) must leave degrade, training, evaluate and report up to date, while a changed test image
or training image makes exactly the stages that read it stale. Each split folder being an out of its own,
curate writes every one of them, even an empty one.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pandas as pd
import pytest
import yaml

from curate import build
from curate.config import CurateConfig
from tests.dvc_repo import new_dvc_repo, run_dvc

ROOT = Path(__file__).resolve().parent.parent
DATASET = "data/celebref"
#: What each stage reads from the dataset (degrade: ``--split test``; evaluate / report: ``evaluate.split``).
READS = {
    "degrade": {f"{DATASET}/test"},
    "evaluate": {f"{DATASET}/test"},
    "report": {f"{DATASET}/test"},
    "train_dmdnet": {f"{DATASET}/train", f"{DATASET}/val"},
    "train_asffnet": {f"{DATASET}/train", f"{DATASET}/val"},
    "train_gfrnet": {f"{DATASET}/train", f"{DATASET}/val"},
}
CARD_FILES = ("README.md", "config.yaml", "rejected.parquet", "manifest.parquet")


def _dvc(workdir: Path, *args: str) -> str:
    done = run_dvc(workdir, *args)
    assert done.returncode == 0, f"dvc {' '.join(args)}: {done.stderr}\n{done.stdout}"
    return done.stdout


def _stand_in(path: Path, text: str) -> None:
    """A file for a path with a suffix (``x.py``, ``README.md``), else a folder holding one file."""
    if path.suffix:
        path.parent.mkdir(parents=True, exist_ok=True)
        if not path.exists():
            path.write_text(text)
    else:
        path.mkdir(parents=True, exist_ok=True)
        if not any(path.iterdir()):
            (path / "stand_in.txt").write_text(text)


def _stage_paths(workdir: Path) -> dict[str, tuple[list[str], list[str]]]:
    """``stage → (deps, outs)`` from ``dvc.yaml`` with each ``foreach`` expanded over its params section."""
    stages = yaml.safe_load((workdir / "dvc.yaml").read_text())["stages"]
    params = yaml.safe_load((workdir / "params.yaml").read_text())
    found: dict[str, tuple[list[str], list[str]]] = {}

    def paths(entries: list | None) -> list[str]:
        return [next(iter(e)) if isinstance(e, dict) else str(e) for e in entries or []]

    for name, stage in stages.items():
        if "foreach" in stage:
            section = params
            for part in stage["foreach"].strip("${} ").split("."):
                section = section[part]
            for key in section:
                body = stage["do"]
                deps = [p.replace("${key}", key) for p in paths(body.get("deps"))]
                outs = [
                    p.replace("${key}", key) for p in paths(body.get("outs")) + paths(body.get("metrics"))
                ]
                found[f"{name}@{key}"] = (deps, outs)
        else:
            found[name] = (paths(stage.get("deps")), paths(stage.get("outs")) + paths(stage.get("metrics")))
    return found


@pytest.fixture(scope="module")
def committed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A DVC repository with the project's pipeline, every path stood in for, committed as up to date."""
    workdir = tmp_path_factory.mktemp("dvc") / "repo"
    new_dvc_repo(workdir)
    for deps, outs in _stage_paths(workdir).values():
        for path in deps + outs:
            _stand_in(workdir / path, f"{path}\n")
    _dvc(workdir, "commit", "--force")
    assert json.loads(_dvc(workdir, "status", "--json")) == {}
    return workdir


@pytest.fixture()
def repo(committed: Path, tmp_path: Path) -> Path:
    """A copy of the committed repository for one test to change."""
    return Path(shutil.copytree(committed, tmp_path / "repo", symlinks=True))


def _stale(workdir: Path) -> set[str]:
    """The stages ``dvc status`` lists, less those that watch ``params.yaml`` as a whole file (a check of
    the file that any edit re-runs and nothing depends on)."""
    watchers = {stage for stage, (deps, _) in _stage_paths(workdir).items() if "params.yaml" in deps}
    return set(json.loads(_dvc(workdir, "status", "--json"))) - watchers


def _family(stage: str) -> str:
    return stage.split("@", 1)[0]


def test_stages_depend_on_the_parts_of_the_dataset_they_read() -> None:
    stages = _stage_paths(ROOT)
    outs = stages["curate"][1]
    assert {f"{DATASET}/{split}" for split in ("train", "val", "test")} <= set(outs)
    assert DATASET not in outs
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    assert params["evaluate"]["split"] == "test"  # what evaluate (and the report's figures) read
    seen = set()
    for stage, (deps, _) in stages.items():
        dataset_deps = {
            d.rstrip("/") for d in deps if d.rstrip("/") == DATASET or d.startswith(f"{DATASET}/")
        }
        if _family(stage) in READS:
            seen.add(_family(stage))
            assert dataset_deps == READS[_family(stage)], f"{stage} depends on {sorted(dataset_deps)}"
        assert DATASET not in dataset_deps, f"{stage} depends on the whole {DATASET}"
    assert seen == set(READS)


def test_curate_rerun_with_the_same_images_leaves_later_stages_up_to_date(repo: Path) -> None:
    params = yaml.safe_load((repo / "params.yaml").read_text())
    params["curate"]["identity_threshold"] = params["curate"]["identity_threshold"] - 0.05
    (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    for name in CARD_FILES:  # what such a run rewrites: other rejection details, another card and config
        (repo / DATASET / name).write_text(f"{name} written with identity_threshold 0.30\n")
    assert _stale(repo) == {"curate"}
    _dvc(repo, "commit", "--force", "curate")  # as `dvc repro curate` records it
    assert _stale(repo) == set()


@pytest.mark.parametrize(
    ("split", "readers"),
    [
        ("test", {"degrade", "evaluate", "report"}),
        ("train", {"train_dmdnet", "train_asffnet", "train_gfrnet"}),
    ],
)
def test_changed_images_make_exactly_their_readers_stale(repo: Path, split: str, readers: set[str]) -> None:
    (repo / DATASET / split).mkdir(parents=True, exist_ok=True)
    (repo / DATASET / split / "new_face.png").write_bytes(b"another image")
    _dvc(repo, "commit", "--force", "curate")
    assert {_family(stage) for stage in _stale(repo)} == readers


def test_curate_writes_every_split_folder_even_an_empty_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each split folder is a DVC out of its own, so it must exist after every run (here: no photo kept)."""
    raw = tmp_path / "raw"
    (raw / "ann").mkdir(parents=True)
    (raw / "ann" / "a.jpg").write_bytes(b"not analysed here")
    row = {
        "identity": "ann",
        "name": "Ann",
        "sha256": "0" * 64,
        "path": "ann/a.jpg",
        "url": "",
        "status": "ok",
    }
    pd.DataFrame([row]).to_parquet(raw / "manifest.parquet", index=False)

    def reject_all(photos: list, config: object, cache: object) -> None:
        for photo in photos:
            photo.drop("no_face", "stand-in for the analysis")

    monkeypatch.setattr(build, "curate_photos", reject_all)
    build.run(CurateConfig(workers=1), raw, tmp_path / "celebref")
    out = tmp_path / "celebref"
    for split in ("train", "val", "test"):
        assert (out / split).is_dir() and not any((out / split).iterdir()), split
    assert {"manifest.parquet", "rejected.parquet", "config.yaml", "README.md"} <= {
        p.name for p in out.iterdir()
    }
