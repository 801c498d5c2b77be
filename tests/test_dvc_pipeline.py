"""``dvc.yaml`` parses with every params file of the repository, and ``params.real.yaml`` covers the paper.

Each ``params*.yaml`` of the repository root is copied as ``params.yaml`` beside ``dvc.yaml`` and the DVC
config into a fresh DVC repository, where ``dvc stage list`` must succeed: the ``foreach`` stages need
their variant sections, so a params file missing one breaks ``dvc repro`` before anything runs. Stage names
are read from DVC's output. For ``params.real.yaml`` the training stages and evaluate methods must also
cover every row of the paper's Table 2 and every Table 3 variant.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
import yaml

from benchmark.methods import BASELINE_ROWS, DEFAULT_CHECKPOINTS, FULL_MODEL_ROW, parse_method_spec
from benchmark.paper import paper_table
from tests.dvc_repo import new_dvc_repo, run_dvc

ROOT = Path(__file__).resolve().parent.parent
PARAMS_FILES = sorted(ROOT.glob("params*.yaml"))
REAL_PARAMS = ROOT / "params.real.yaml"
#: train section holding each training stage's variants (``train_<model>@<variant>``).
VARIANT_SECTIONS = {"dmdnet": "variants", "asffnet": "asffnet_variants", "gfrnet": "gfrnet_variants"}


def dvc_stage_names(params_file: Path, workdir: Path) -> list[str]:
    """The stages ``dvc stage list`` prints for the project's ``dvc.yaml`` with ``params_file`` as
    ``params.yaml``, in a fresh DVC repository at ``workdir``; fails the test when DVC cannot parse it."""
    new_dvc_repo(workdir, params_file)
    done = run_dvc(workdir, "stage", "list")
    if done.returncode != 0:
        pytest.fail(
            f"dvc stage list fails with {params_file.name} as params.yaml (exit {done.returncode}):\n"
            f"{done.stderr.strip()}\n{done.stdout.strip()}",
            pytrace=False,
        )
    return [line.split()[0] for line in done.stdout.splitlines() if line.strip()]


@pytest.fixture(scope="module")
def stage_names(tmp_path_factory: pytest.TempPathFactory) -> Callable[[Path], list[str]]:
    """``dvc_stage_names`` run once per params file for the module's tests."""
    cache: dict[Path, list[str]] = {}

    def names(params_file: Path) -> list[str]:
        if params_file not in cache:
            cache[params_file] = dvc_stage_names(params_file, tmp_path_factory.mktemp("dvc_repo"))
        return cache[params_file]

    return names


def check_variant_stages(params: dict, stages: list[str]) -> None:
    """Every variant of every model has its ``train_<model>@<variant>`` stage."""
    train = params.get("train") or {}
    for model, section in VARIANT_SECTIONS.items():
        for key in train.get(section) or {}:
            assert f"train_{model}@{key}" in stages, f"no stage train_{model}@{key}; dvc lists {stages}"


def checkpoint(key: str) -> str:
    return f"models/{key}/generator.pth"


def check_table2(params: dict, stages: list[str]) -> None:
    """Training stages and evaluate methods for every row of Table 2 and every Table 3 variant."""
    check_variant_stages(params, stages)
    train = params["train"]
    methods = [parse_method_spec(spec) for spec in params["evaluate"]["methods"]]
    evaluated = {(name, argument or DEFAULT_CHECKPOINTS.get(name)) for name, argument in methods}

    for model, row in BASELINE_ROWS.items():
        section = VARIANT_SECTIONS[model]
        keys = [k for k, v in (train.get(section) or {}).items() if (v or {}).get("paper_row") == row]
        assert keys, f"no train.{section} variant with paper_row {row!r} (Table 2)"
        assert any((model, checkpoint(key)) in evaluated for key in keys), (
            f"{row}: evaluate.methods runs none of {[checkpoint(k) for k in keys]} with {model} "
            f"(add {model}:<checkpoint>, or {model} for {DEFAULT_CHECKPOINTS[model]})"
        )

    variants = train["variants"]
    full = [k for k, v in variants.items() if (v or {}).get("paper_row") == FULL_MODEL_ROW]
    assert full, (
        f"no train.variants variant with paper_row {FULL_MODEL_ROW!r} (Table 2's Ours^g and Ours (Full))"
    )
    for name, row in (("dmdnet-generic", "Ours^g"), ("dmdnet", "Ours (Full)")):
        assert any((name, checkpoint(k)) in evaluated for k in full), (
            f"{row}: evaluate.methods has none of {[f'{name}:{checkpoint(k)}' for k in full]}"
        )

    run = {argument for _, argument in evaluated}
    for key, variant in variants.items():
        row = (variant or {}).get("paper_row")
        assert not row or checkpoint(key) in run, f"{row}: evaluate.methods never runs {checkpoint(key)}"
    # every row of the paper's Table 3 is trained (Ours(128) is the full model, Ours^s the specific-only one)
    claimed = {(v or {}).get("paper_row") for v in variants.values()}
    missing = [row.method for row in paper_table(3).rows if row.method not in claimed]
    assert not missing, f"no train.variants variant claims the Table 3 rows {missing}"


def test_params_files_found():
    assert {p.name for p in PARAMS_FILES} >= {"params.yaml", "params.real.yaml"}


@pytest.mark.parametrize("params_file", PARAMS_FILES, ids=lambda p: p.name)
def test_pipeline_parses(params_file: Path, stage_names):
    stages = stage_names(params_file)
    assert {"crawl", "curate", "degrade", "evaluate", "report"} <= set(stages), stages
    check_variant_stages(yaml.safe_load(params_file.read_text()), stages)


def test_real_params_cover_the_paper_tables(stage_names):
    check_table2(yaml.safe_load(REAL_PARAMS.read_text()), stage_names(REAL_PARAMS))
