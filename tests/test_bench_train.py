"""The training benchmark scripts refuse bad arguments in one line, before any work."""

from __future__ import annotations

from pathlib import Path

import pytest

from benchmark import bench_train_dmdnet, bench_train_speed


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--params", "missing.yaml"], "params file not found: missing.yaml"),
        (["--lq", "missing-lq"], "missing-lq not found: run `dvc repro degrade`"),
        (["--steps", "0"], "--steps and --threads must be >= 1"),
    ],
)
def test_learning_check_refuses_bad_arguments(tmp_path: Path, args, message, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "params.yaml").write_text("train: {}\n")
    for folder in ("data/celebref", "data/lq"):
        (tmp_path / folder).mkdir(parents=True)
    with pytest.raises(SystemExit) as exc:
        bench_train_dmdnet.main([*args, "--out", str(tmp_path / "out")])
    assert exc.value.code == 2 and message in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    "args", [["--items", "0"], ["--batch", "2", "0"], ["--items-per-step", "0"], ["--warmup", "-1"]]
)
def test_speed_script_refuses_bad_arguments(args, capsys):
    assert bench_train_speed.main(args) == 2
    assert capsys.readouterr().err.startswith("error: ")
