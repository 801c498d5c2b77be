"""Benchmark scripts: ``--help`` prints help without running anything; the learning check's ``--steps``
budget shows in the description of what it trained."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from benchmark import bench_kernel_noise, bench_train_dmdnet


def _no_benchmark(*args: object, **kwargs: object) -> None:
    raise AssertionError("the benchmark ran")


def test_kernel_noise_help_prints_help_only(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    monkeypatch.setattr(bench_kernel_noise, "generate_fixture_state_dict", _no_benchmark)
    monkeypatch.setattr(bench_kernel_noise, "capabilities", _no_benchmark)
    with pytest.raises(SystemExit) as exc:
        bench_kernel_noise.main(["--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: python -m benchmark.bench_kernel_noise") and "--threads" in out
    assert "ONEDNN_MAX_CPU_ISA=AVX2" in out  # the module's description, kept as written
    with pytest.raises(SystemExit) as exc:
        bench_kernel_noise.main(["--threads", "0"])
    assert exc.value.code == 2 and "--threads must be >= 1" in capsys.readouterr().err


#: The demo's variants as ``params.yaml`` describes them: the budget is part of the text.
DEMO_TRAIN = {
    "trainer": {"steps": 120, "batch_size": 2},
    "variants": {
        "dmdnet": {
            "description": "demo-size DMDNet (16 channels, 4 generic items, 120 steps of 2, MSE only)",
            "schedule": {"stages": ["init", "forward", "backward", "frozen"], "steps": [10, 10, 10]},
        }
    },
    "asffnet_variants": {
        "asffnet": {"description": "demo-size ASFFNet* (60 steps of 2, MSE only)", "steps": 60}
    },
    "gfrnet_variants": {
        "gfrnet": {
            "description": "demo-size GFRNet* (20 WarpNet steps, then 100 end to end)",
            "warp_steps": 20,
        }
    },
}


def _variants(path: Path) -> dict[str, dict]:
    train = yaml.safe_load(path.read_text())["train"]
    return {
        k: v
        for section in ("variants", "asffnet_variants", "gfrnet_variants")
        for k, v in train[section].items()
    }


def test_learning_check_description_names_the_steps_it_trains(tmp_path: Path) -> None:
    params = tmp_path / "demo_params.yaml"
    params.write_text(yaml.safe_dump({"train": DEMO_TRAIN}))
    (tmp_path / "out").mkdir()
    written = _variants(bench_train_dmdnet._params_with(params, tmp_path / "out", 20))
    assert {k: v["steps"] for k, v in written.items()} == {"dmdnet": 20, "asffnet": 20, "gfrnet": 20}
    assert written["dmdnet"]["schedule"]["steps"] == [1, 1, 1]
    # the budget in the text is replaced, the rest kept
    assert (
        written["dmdnet"]["description"]
        == "demo-size DMDNet (16 channels, 4 generic items, 20 steps of 2, MSE only)"
    )
    assert written["asffnet"]["description"] == "demo-size ASFFNet* (20 steps of 2, MSE only)"
    # no "<budget> steps" in the text: the budget is appended
    assert written["gfrnet"]["description"] == (
        "demo-size GFRNet* (20 WarpNet steps, then 100 end to end); "
        "this run: 20 steps in all, not 120 (--steps)"
    )
    unchanged = _variants(bench_train_dmdnet._params_with(params, tmp_path / "out", None))
    assert {k: v["description"] for k, v in unchanged.items()} == {
        k: v["description"] for k, v in _variants(params).items()
    }
