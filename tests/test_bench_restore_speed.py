"""The restoration speed script: its GFRNet worker on a tiny network, the table, the argument checks."""

from __future__ import annotations

import argparse
import math
from pathlib import Path

import pytest
import torch

from benchmark.bench_restore_speed import UNTRAINED, format_table, gfrnet_worker, main, psnr_db
from celebref.hardware import capabilities
from gfrnet.network import GFRNet, GFRNetConfig

TINY = GFRNetConfig(warp_channels=(4, 8), rec_channels=(4, 8))


def _opts(**changes: object) -> argparse.Namespace:
    opts = {
        "device": "cpu",
        "precision": "fp32",
        "threads": torch.get_num_threads(),  # leave the test process's setting as it is
        "runs": 2,
        "batch": 1,
        "gfrnet_weights": None,
    }
    return argparse.Namespace(**{**opts, **changes})


def _check_figures(r: dict, runs: int) -> None:
    assert len(r["times_s"]) == runs
    assert 0 < r["min_s"] <= r["median_s"]
    assert r["peak_rss_mb"] >= r["load_rss_mb"] > 0


def test_gfrnet_worker_fp32():
    r = gfrnet_worker(_opts(batch=2), config=TINY)
    _check_figures(r, 2)
    assert "frontal" in r["what"]
    assert "psnr_db" not in r


@pytest.mark.skipif(not capabilities("cpu").bf16, reason="no bf16 convolutions on this CPU")
def test_gfrnet_worker_bf16_reports_psnr_against_fp32():
    r = gfrnet_worker(_opts(precision="bf16", runs=1), config=TINY)
    _check_figures(r, 1)
    assert 20 < r["psnr_db"] < math.inf


def test_gfrnet_weights_hook_loads_the_checkpoint(tmp_path: Path):
    from gfrnet.trained import save_gfrnet

    torch.manual_seed(1)
    path = save_gfrnet(GFRNet(config=TINY), tmp_path / "generator.pth")
    r = gfrnet_worker(_opts(runs=1, gfrnet_weights=path))  # the file's tiny config, not the default one
    _check_figures(r, 1)


def test_psnr_db():
    a = torch.zeros(1, 3, 4, 4)
    assert psnr_db(a, a) == math.inf
    assert psnr_db(a, a + 0.2) == pytest.approx(20.0)  # 0.2 in [-1, 1] is 0.1 in [0, 1]


def _row(**changes: object) -> dict:
    r = {"what": "w", "weights": "fixture rule (not trained)", "median_s": 2.0, "min_s": 1.0}
    return {**r, "peak_rss_mb": 1000.4, "load_rss_mb": 600.0, "batch": 2, **changes}


def test_format_table_fp32_and_bf16():
    rows = [("asffnet512", _row(fixture_max_abs=1.9e-6)), ("gfrnet", _row(weights=UNTRAINED))]
    rows.append(("dmdnet-generic", {"error": "failed: boom | bang"}))
    lines = format_table(rows, precision="fp32", cuda=False).splitlines()
    assert lines[0].endswith("| output check |")
    assert len(lines) == 5 and all(line.count(" | ") == lines[0].count(" | ") for line in lines[2:4])
    assert "| 1.000 | 0.500 | 1000 | 600 |" in lines[2]  # per face: the batch divides the times
    assert "out.npy\\| 1.9e-06 (tolerance 5e-05)" in lines[2]
    assert "timing only: untrained weights" in lines[3]
    assert "boom \\| bang" in lines[4]
    bf16 = format_table([("gfrnet", _row(psnr_db=41.234))], precision="bf16", cuda=True).splitlines()
    assert "PSNR bf16 vs fp32 (dB)" in bf16[0] and "peak GPU MiB" in bf16[0]
    assert bf16[2].endswith("| nan | 41.23 |")


def test_missing_weights_file_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    with pytest.raises(SystemExit) as exc:
        main(["--models", "asffnet512", "--asffnet-weights", str(tmp_path / "ASFFNet512.pth")])
    assert exc.value.code == 2
    assert "no such file" in capsys.readouterr().err
