"""The whole-params check (``python -m celebref.params``) and the DVC stage that runs it.

Every section is validated by its stage's model, then the rules across sections; the first problem is one
line ``error: <section.key>: <message>`` and exit code 2. The project's own params files pass.
"""

from __future__ import annotations

import copy
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from celebref.config import ConfigError
from celebref.params import SECTIONS, check_params_file, main, validate_params
from tests.test_dvc_pipeline import dvc_stage_names

ROOT = Path(__file__).resolve().parent.parent
PARAMS = ROOT / "params.yaml"


def _params() -> dict[str, Any]:
    return yaml.safe_load(PARAMS.read_text(encoding="utf-8"))


def _edit(path: str, value: Any) -> Callable[[dict], None]:
    """An edit of the params mapping: set the dotted ``path`` to ``value`` (``...`` deletes it)."""

    def apply(params: dict) -> None:
        *parents, last = path.split(".")
        node = params
        for part in parents:
            node = node[part]
        if value is ...:
            del node[last]
        else:
            node[last] = value

    return apply


def _run_main(params: dict, tmp_path: Path, capsys: pytest.CaptureFixture) -> tuple[int, str, str]:
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(params, sort_keys=False), encoding="utf-8")
    try:
        code = main(["--params", str(path)])
    except SystemExit as exc:
        code = exc.code
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.parametrize("name", ["params.yaml", "params.real.yaml"])
def test_project_params_files_pass(name: str, capsys: pytest.CaptureFixture) -> None:
    configs = check_params_file(ROOT / name)
    assert list(configs) == list(SECTIONS)
    assert main(["--params", str(ROOT / name)]) == 0
    out, err = capsys.readouterr()
    assert out.startswith(f"params OK: {ROOT / name}") and err == ""


BAD = {
    # a typo in a key whose stage does not re-run on it
    "typo": ([_edit("curate.worker", 2)], "curate.worker: unknown key; did you mean 'workers'?"),
    "bad literal": ([_edit("curate.backend", "rya")], "curate.backend: Input should be 'local' or 'ray'"),
    "min above max": (
        [_edit("curate.min_images", 30)],
        "curate.max_images: must be >= min_images (30), got 21",
    ),
    "nested typo": ([_edit("curate.faces.detectr", "hog")], "curate.faces.detectr: unknown key"),
    "unknown section": ([_edit("curat", {})], "curat: unknown section; did you mean 'curate'?"),
    "missing section": ([_edit("report", ...)], "report: section missing"),
    "train schedule": (
        [_edit("train.variants.dmdnet.schedule.steps", [10, 10])],
        "train.variants.dmdnet.schedule: need 3 positive stage lengths",
    ),
    "train losses": (
        [_edit("train.losses.adversarial", [1, 1])],
        "train.losses: adversarial_scales and adversarial weights must have the same length",
    ),
    "min_images above what the crawl keeps": (
        [_edit("curate.min_images", 60), _edit("curate.max_images", 60)],
        "curate.min_images: must be <= crawl.max_images (50), got 60",
    ),
    "degrade size": ([_edit("degrade.size", 256)], "degrade.size: must equal curate.size (512)"),
    "evaluate task not built": (
        [_edit("evaluate.tasks", ["x4", "x2"])],
        "evaluate.tasks: x2 not among degrade.test_scales (x4, x8)",
    ),
    "evaluate split empty": (
        [_edit("curate.split", {"train": 1, "val": 0, "test": 0})],
        "evaluate.split: curate.split gives 'test' no identity",
    ),
    "crop border": ([_edit("evaluate.crop_border", 256)], "evaluate: crop_border (256) must be < size / 2"),
    "min_side above max_pixels": (
        [_edit("crawl.min_side", 2000), _edit("crawl.max_pixels", 1000)],
        "crawl.max_pixels: must be >= min_side² (4000000), got 1000",
    ),
}


@pytest.mark.parametrize("case", list(BAD), ids=list(BAD))
def test_bad_params_are_one_line_and_exit_2(case: str, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    edits, expected = BAD[case]
    params = _params()
    for edit in edits:
        edit(params)
    code, out, err = _run_main(params, tmp_path, capsys)
    assert code == 2 and out == ""
    assert err.count("\n") == 1 and err.startswith("error: "), err
    assert expected in err, err


def test_partial_files_check_the_sections_they_hold() -> None:
    """A stage's entry point checks what the file holds; the params check wants every section."""
    params = _params()
    partial = {"curate": params["curate"], "notes": {"anything": 1}}
    assert list(validate_params(partial, complete=False)) == ["curate"]
    with pytest.raises(ConfigError, match="notes: unknown section"):
        validate_params(partial)
    bad = copy.deepcopy(partial)
    bad["curate"]["min_images"] = 30
    with pytest.raises(ConfigError, match=r"^curate\.max_images: must be >= min_images \(30\)"):
        validate_params(bad, complete=False)


def test_unreadable_params_files(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    bad_yaml = tmp_path / "bad.yaml"
    bad_yaml.write_text("crawl: [\n", encoding="utf-8")
    for argv, expected in (
        (["--params", str(bad_yaml)], f"error: {bad_yaml}: not valid YAML"),
        (["--params", str(tmp_path / "none.yaml")], "error: params file not found"),
        (["--bogus"], "error: unrecognized arguments: --bogus"),
    ):
        with pytest.raises(SystemExit) as exc:
            main(argv)
        err = capsys.readouterr().err
        assert exc.value.code == 2 and err.count("\n") == 1 and err.startswith(expected), err


def test_cli_process_exit_codes(tmp_path: Path) -> None:
    params = _params()
    params["curate"]["worker"] = 2
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(params), encoding="utf-8")
    cmd = [sys.executable, "-m", "celebref.params", "--params", str(path)]
    done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 2, done.stderr
    assert done.stderr == "error: curate.worker: unknown key; did you mean 'workers'?\n"


# the DVC stage -------------------------------------------------------------------------------------------


def test_dvc_check_stage_depends_on_the_params_file(tmp_path: Path) -> None:
    stages = dvc_stage_names(PARAMS, tmp_path / "repo")
    assert stages[0] == "check_params", stages
    spec = yaml.safe_load((ROOT / "dvc.yaml").read_text(encoding="utf-8"))["stages"]
    check = spec["check_params"]
    assert "python -m celebref.params --params params.yaml" in check["cmd"]
    assert "params.yaml" in check["deps"] and "celebref" in check["deps"]
    for module in SECTIONS.values():  # every section's model is a dependency
        path = module.split(":")[0].replace(".", "/") + ".py"
        assert path in check["deps"], f"{path} not among the check's deps"
    assert not check.get("outs") and not check.get("params")
    for name, stage in spec.items():  # an edit re-runs the check only, not the pipeline
        body = stage.get("do", stage)
        assert "params.yaml" not in (body.get("deps") or []) or name == "check_params", name
