"""The curation benchmark runs curate's own per-photo steps and prints a figure for each."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest

from benchmark.bench_curation import STEPS, main
from tests.paths import DEMO_FACES


def test_bench_curation_prints_every_step_and_the_end_to_end_rate(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    for name in ("1.jpg", "4.jpg"):  # a portrait and a crowd photo
        shutil.copy(DEMO_FACES / "barack_obama" / name, tmp_path / name)
    assert main(["--data", str(tmp_path), "--repeat", "1", "--workers", "1", "--min-face", "200"]) == 0
    out = capsys.readouterr().out
    for step in STEPS:
        assert re.search(rf"^\s+{step}\s+\d+\.\d ms$", out, re.M), step
    assert "(shrunk for min_face)" in out
    rate = re.search(
        r"end to end, 1 processes: (\d+\.\d+) photos/s \(2 photos in .*; (\d) with a usable face", out
    )
    assert rate is not None and float(rate[1]) > 0 and rate[2] == "2"
