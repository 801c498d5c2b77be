"""``metrics/summary.json`` holds numbers only; the rest of the run goes to ``run.json``; the DVC metrics
(``metrics/scores/``) print as a short table in ``dvc metrics show``."""

from __future__ import annotations

import copy
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from benchmark import evaluate, report
from benchmark.evaluate import run
from benchmark.evaluate_config import EvaluateConfig
from benchmark.methods import method_slug
from celebref.images import read_image, write_png
from degrade.config import DegradeConfig
from degrade.testset import run as degrade_run
from tests.dvc_repo import new_dvc_repo, run_dvc
from tests.test_evaluate import StubEmbedder, make_dataset

ROOT = Path(__file__).resolve().parent.parent
MAX_COLUMNS = 120


@pytest.fixture(scope="module")
def evaluated(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict, Path]:
    """An evaluation of ``lq``, an external folder and an unavailable ``dmdnet`` on a tiny test set."""
    root = tmp_path_factory.mktemp("summary")
    make_dataset(root / "celebref")
    degrade_run(DegradeConfig(workers=1), root / "celebref", root / "lq", split="test")
    external = root / "external_method"
    for task in ("x4", "x8"):
        for png in sorted((root / "celebref" / "test").rglob("*.png")):
            gt = read_image(png)
            out = external / task / png.parent.name / png.name
            write_png(out, np.clip(gt.astype(int) + 2, 0, 255).astype(np.uint8))
    (root / "weights").mkdir()
    config = EvaluateConfig.model_validate(
        {
            "methods": ["lq", f"folder:{external}", "dmdnet"],
            "metrics": ["psnr", "ssim", "lpips", "id"],
            "weights": {"dir": str(root / "weights")},
            "num_threads": 1,
        }
    )
    record = run(
        config, root / "celebref", root / "lq", root / "results", root / "metrics", embedder=StubEmbedder()
    )
    return record, root / "metrics"


def _keys_named(name: str, data: object) -> list[object]:
    """Every value stored under the key ``name`` anywhere in nested dicts and lists."""
    if isinstance(data, dict):
        return [v for k, v in data.items() if k == name] + [
            x for v in data.values() for x in _keys_named(name, v)
        ]
    if isinstance(data, list):
        return [x for v in data for x in _keys_named(name, v)]
    return []


def _is_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def test_summary_holds_only_numbers_keyed_method_task_metric(evaluated: tuple[dict, Path]) -> None:
    record, metrics = evaluated
    numbers = json.loads((metrics / "summary.json").read_text(encoding="utf-8"))
    assert set(numbers) == {"lq", f"folder:{Path(metrics).parent / 'external_method'}"}  # dmdnet: no weights
    for name, tasks in numbers.items():
        assert set(tasks) == {"x4", "x8"}
        for task, values in tasks.items():
            assert set(values) == {"psnr", "ssim", "id"}, values  # lpips unavailable: no number
            assert all(_is_number(v) for v in values.values()), values
            for key, value in values.items():
                assert value == record["methods"][name]["tasks"][task]["metrics"][key]["value"]
    assert numbers["lq"]["x4"]["psnr"] > numbers["lq"]["x8"]["psnr"]


def test_run_json_holds_the_rest_and_the_report_joins_them(evaluated: tuple[dict, Path]) -> None:
    record, metrics = evaluated
    context = json.loads((metrics / "run.json").read_text(encoding="utf-8"))
    assert set(context) >= {"methods", "tasks", "metrics", "n", "conventions", "config"}
    assert "DMDNet.pth" in context["methods"]["dmdnet"]["reason"]
    lq = context["methods"]["lq"]["tasks"]["x4"]
    assert lq["n"] == 4 and "value" not in lq["metrics"]["psnr"]
    assert not lq["metrics"]["lpips"]["available"] and lq["metrics"]["lpips"]["reason"]
    assert not _keys_named("value", context)  # no score left in run.json
    assert report.load_summary(metrics) == json.loads(json.dumps(record))


def test_scores_are_one_file_per_method_and_task(evaluated: tuple[dict, Path]) -> None:
    record, metrics = evaluated
    files = sorted(str(p.relative_to(metrics / "scores")) for p in (metrics / "scores").rglob("*.json"))
    assert files == [
        "x4/folder-external_method.json",
        "x4/lq.json",
        "x8/folder-external_method.json",
        "x8/lq.json",
    ]
    scores = json.loads((metrics / "scores" / "x8" / "lq.json").read_text(encoding="utf-8"))
    assert scores == {
        k: m["value"] for k, m in record["methods"]["lq"]["tasks"]["x8"]["metrics"].items() if m["available"]
    }


def test_summary_without_numbers_or_run_record_is_an_error(
    tmp_path: Path, evaluated: tuple[dict, Path]
) -> None:
    _, metrics = evaluated
    shutil.copytree(metrics, tmp_path / "metrics")
    (tmp_path / "metrics" / "run.json").unlink()
    with pytest.raises(FileNotFoundError, match="run.json not found: run the evaluation first"):
        report.load_summary(tmp_path / "metrics")
    shutil.copy(metrics / "run.json", tmp_path / "metrics" / "run.json")
    (tmp_path / "metrics" / "summary.json").write_text('{"lq": {"x4": {"psnr": "high"}}}', encoding="utf-8")
    with pytest.raises(ValueError, match="not an evaluation summary"):
        report.load_summary(tmp_path / "metrics")


def _full_record(record: dict) -> dict:
    """``record`` grown to the demo's five methods with all five metrics computed: the widest it gets."""
    full = copy.deepcopy(record)
    lq = full["methods"]["lq"]
    values = {"psnr": 31.123456, "ssim": 0.8123456, "lpips": 0.2345678, "fid": 123.456789, "id": 0.9123456}
    for task in lq["tasks"].values():
        for key, value in values.items():
            task["metrics"][key] = {"label": key.upper(), "available": True, "value": value, "n": 4}
    full["methods"] = {"lq": lq}
    for name in ("dmdnet:models/dmdnet/generator.pth", "asffnet", "gfrnet", "asffnet512"):
        entry = copy.deepcopy(lq)
        entry["slug"] = method_slug(name)
        full["methods"][name] = entry
    return full


def _dvc_metrics_show(metrics: Path, workdir: Path) -> str:
    """``dvc metrics show`` in a fresh DVC repository holding the project's ``dvc.yaml`` and ``metrics``."""
    new_dvc_repo(workdir)
    shutil.copytree(metrics, workdir / "metrics")
    done = run_dvc(workdir, "metrics", "show")
    assert done.returncode == 0, done.stderr
    return done.stdout


@pytest.mark.parametrize("widest", [False, True], ids=["evaluated", "five_methods_all_metrics"])
def test_dvc_metrics_show_fits_in_120_columns(
    evaluated: tuple[dict, Path], tmp_path: Path, widest: bool
) -> None:
    record, metrics = evaluated
    if widest:
        metrics = tmp_path / "widest"
        evaluate.write_summary(_full_record(record), metrics)
    out = _dvc_metrics_show(metrics, tmp_path / "repo")
    lines = [line for line in out.splitlines() if line.strip()]
    assert lines and "psnr" in lines[0], out
    rows = 1 + (10 if widest else 4)  # header + one row per method and task
    assert len(lines) == rows, out
    assert max(len(line) for line in lines) <= MAX_COLUMNS, out
    if widest:
        assert any("dmdnet-dmdnet-generator" in line and "31.12346" in line for line in lines), out
