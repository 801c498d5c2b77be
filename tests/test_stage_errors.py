"""Every stage CLI answers bad configuration, arguments or inputs with one line ``error: …`` and exit 2,
before it writes anything; each checks the whole params file first, not only its own section. A run that
produces nothing it was asked for (curate keeping no image, degrade writing none) exits 1."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml
from PIL import Image

import benchmark.evaluate
import benchmark.report
import crawl.__main__
import curate.__main__
import degrade.__main__
import dmdnet.train.__main__
from crawl.config import CrawlConfig
from crawl.manifest import read_manifest, write_manifest
from crawl.run import run as crawl_run

ROOT = Path(__file__).resolve().parent.parent

#: stage → (entry point, arguments besides --params; ``{tmp}`` is the test's folder).
STAGES: dict[str, tuple[Callable[[list[str]], Any], list[str]]] = {
    "crawl": (crawl.__main__.main, ["--out", "{tmp}/out"]),
    "curate": (curate.__main__.main, ["--raw", "{tmp}/raw", "--out", "{tmp}/out"]),
    "degrade": (degrade.__main__.main, ["--dataset", "{tmp}/dataset", "--out", "{tmp}/out"]),
    "train": (dmdnet.train.__main__.main, ["--dataset", "{tmp}/dataset", "--out", "{tmp}/out"]),
    "evaluate": (
        benchmark.evaluate.main,
        ["--dataset", "{tmp}/dataset", "--lq", "{tmp}/lq", "--results", "{tmp}/out", "--metrics", "{tmp}/m"],
    ),
    "report": (benchmark.report.main, ["--metrics", "{tmp}/metrics", "--out", "{tmp}/out"]),
}


def _call(stage: str, params: Path, tmp_path: Path, extra: list[str] | None = None) -> int:
    """Run the stage's entry point in process; its exit code (a return value or a SystemExit)."""
    entry, args = STAGES[stage]
    argv = ["--params", str(params), *(a.replace("{tmp}", str(tmp_path)) for a in args), *(extra or [])]
    try:
        code = entry(argv)
    except SystemExit as exc:
        code = exc.code
    return code


def _write(tmp_path: Path, params: dict) -> Path:
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(params, sort_keys=False), encoding="utf-8")
    return path


def _one_error_line(err: str) -> str:
    lines = err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    return lines[0]


def _nothing_written(tmp_path: Path) -> None:
    left = sorted(p.name for p in tmp_path.iterdir() if p.name != "params.yaml")
    assert left == [], f"written despite the error: {left}"


@pytest.mark.parametrize("stage", list(STAGES))
def test_each_stage_checks_the_whole_params_file(
    stage: str, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    """A typo in another stage's section stops this stage too."""
    params = yaml.safe_load((ROOT / "params.yaml").read_text(encoding="utf-8"))
    other = "degrade" if stage == "curate" else "curate"
    params[other]["worker"] = 2
    assert _call(stage, _write(tmp_path, params), tmp_path) == 2
    line = _one_error_line(capsys.readouterr().err)
    assert line == f"error: {other}.worker: unknown key; did you mean 'workers'?"
    _nothing_written(tmp_path)


BAD_SECTIONS: dict[str, tuple[dict, str]] = {
    "crawl": ({"engine": "local", "local_root": "x", "workers": 0}, "error: crawl.workers: Input should be"),
    "curate": ({"min_images": 30, "max_images": 21}, "error: curate.max_images: must be >= min_images (30)"),
    "degrade": ({"test_scales": {"x4": 0.5}}, "error: degrade: test_scales: bad task 'x4'"),
    "evaluate": ({"methods": ["nope"]}, "error: evaluate.methods: "),
    "report": ({"tables": [5]}, "error: report.tables: unknown table 5"),
}


@pytest.mark.parametrize("stage", list(BAD_SECTIONS))
def test_bad_section_is_one_line_exit_2(stage: str, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    section, expected = BAD_SECTIONS[stage]
    assert _call(stage, _write(tmp_path, {stage: section}), tmp_path) == 2
    assert _one_error_line(capsys.readouterr().err).startswith(expected)
    _nothing_written(tmp_path)


def test_flickr_without_api_key_writes_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    monkeypatch.delenv("CELEBREF_TEST_FLICKR_KEY", raising=False)
    ids = tmp_path / "ids.txt"
    ids.write_text("Ada Lovelace\n", encoding="utf-8")
    section = {
        "engine": "flickr",
        "identities_file": str(ids),
        "flickr_apikey_env": "CELEBREF_TEST_FLICKR_KEY",
    }
    params = _write(tmp_path, {"crawl": section})
    assert _call("crawl", params, tmp_path) == 2
    line = _one_error_line(capsys.readouterr().err)
    assert line == (
        "error: engine 'flickr' needs a Flickr API key in the environment variable CELEBREF_TEST_FLICKR_KEY"
    )
    assert not (tmp_path / "out").exists()  # no crawl_config.yaml either


MISSING_INPUTS: dict[str, tuple[dict, str]] = {
    "crawl": ({"engine": "local", "local_root": "{tmp}/nowhere"}, "error: local_root is not a folder"),
    "curate": ({}, "error: raw manifest not found"),
    "degrade": ({}, "error: dataset root not found"),
    "evaluate": ({"tasks": ["x4"]}, "error: dataset root not found"),
    "report": ({}, "error: {tmp}/metrics/summary.json not found: run the evaluation first"),
}


@pytest.mark.parametrize("stage", list(MISSING_INPUTS))
def test_missing_inputs_are_one_line_exit_2(
    stage: str, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    section, expected = MISSING_INPUTS[stage]
    section = {k: v.replace("{tmp}", str(tmp_path)) if isinstance(v, str) else v for k, v in section.items()}
    assert _call(stage, _write(tmp_path, {stage: section}), tmp_path) == 2
    assert _one_error_line(capsys.readouterr().err).startswith(expected.replace("{tmp}", str(tmp_path)))
    _nothing_written(tmp_path)


def test_curate_with_an_empty_crawl_writes_nothing(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    raw = tmp_path / "raw"
    raw.mkdir()
    write_manifest(raw / "manifest.parquet", read_manifest(raw / "manifest.parquet"))  # no rows
    assert _call("curate", _write(tmp_path, {"curate": {}}), tmp_path) == 2
    line = _one_error_line(capsys.readouterr().err)
    assert line == f"error: {raw}: the raw manifest lists no successfully downloaded photo"
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("stage", ["degrade", "evaluate", "report", "crawl", "curate"])
def test_bad_arguments_are_one_line_exit_2(stage: str, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    assert _call(stage, _write(tmp_path, {}), tmp_path, ["--no-such-option"]) == 2
    line = _one_error_line(capsys.readouterr().err)
    assert line.startswith("error: unrecognized arguments: --no-such-option")


def test_process_prints_no_traceback(tmp_path: Path) -> None:
    params = _write(tmp_path, {"curate": {"backend": "rya"}})
    cmd = [sys.executable, "-m", "curate", "--params", str(params), "--raw", str(tmp_path / "raw")]
    done = subprocess.run([*cmd, "--out", str(tmp_path / "out")], cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 2
    assert done.stderr == "error: curate.backend: Input should be 'local' or 'ray', got 'rya'\n"
    assert not (tmp_path / "out").exists()


# runs that produce nothing they were asked for: exit 1 -----------------------------------------------------


def test_curate_that_keeps_no_image_exits_1(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    faces = tmp_path / "faces"
    (faces / "ada_lovelace").mkdir(parents=True)
    Image.new("RGB", (96, 96), (90, 120, 150)).save(faces / "ada_lovelace" / "1.jpg")  # no face in it
    crawl_run(CrawlConfig(engine="local", local_root=faces, workers=1), tmp_path / "raw", progress=False)
    params = _write(tmp_path, {"curate": {"workers": 1, "min_images": 1, "min_face": 32}})
    assert _call("curate", params, tmp_path) == 1
    line = _one_error_line(capsys.readouterr().err.replace("\r", "\n").splitlines()[-1])
    assert line == f"error: curate kept no image: {tmp_path / 'out' / 'rejected.parquet'} says why"
    assert (tmp_path / "out" / "rejected.parquet").is_file()


def test_degrade_that_writes_no_image_exits_1(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    folder = tmp_path / "dataset" / "test" / "ada_lovelace"
    folder.mkdir(parents=True)
    Image.new("RGB", (64, 64), (90, 120, 150)).save(folder / "0.png")  # not the 512 px the params ask for
    (folder / "0.landmarks.txt").write_text("10 10\n" * 68, encoding="utf-8")
    assert _call("degrade", _write(tmp_path, {"degrade": {"workers": 1}}), tmp_path) == 1
    err = capsys.readouterr().err
    assert _one_error_line(err.splitlines()[-1]).startswith("error: degrade wrote no image to ")
    assert (tmp_path / "out" / "test_x4" / "degradations.csv").is_file()
