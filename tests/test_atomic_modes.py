"""Files and folders written through the atomic helpers get the modes ``open()`` / ``mkdir`` would give.

Mode ``0o666`` for files and ``0o777`` for folders, less the process umask: a dataset on shared storage is
readable by the group (umask ``027``) or by everyone (umask ``022``), not by its writer alone.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest
from PIL import Image

from celebref.atomic import (
    atomic_dir,
    atomic_path,
    atomic_write_bytes,
    atomic_write_parquet,
    atomic_write_text,
)
from celebref.config import StageConfig, dump_config
from crawl.config import CrawlConfig
from crawl.manifest import MANIFEST_NAME
from crawl.run import run as crawl_run

UMASKS = [0o022, 0o027, 0o002]


@pytest.fixture(params=UMASKS, ids=[f"umask{m:03o}" for m in UMASKS])
def umask(request: pytest.FixtureRequest) -> Iterator[int]:
    """Run the test under ``request.param`` as the process umask, then restore the old one."""
    old = os.umask(request.param)
    try:
        yield request.param
    finally:
        os.umask(old)


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_files_honour_the_umask(tmp_path: Path, umask: int) -> None:
    expected = 0o666 & ~umask
    atomic_write_bytes(tmp_path / "a.bin", b"x")
    atomic_write_text(tmp_path / "deep" / "b.txt", "y")
    atomic_write_parquet(tmp_path / "c.parquet", pd.DataFrame({"k": [1]}))
    with atomic_path(tmp_path / "d.png") as tmp:
        Image.new("RGB", (4, 4)).save(tmp, format="PNG")

    class Small(StageConfig):
        value: int = 1

    dump_config(Small(), tmp_path / "config.yaml")
    for name in ("a.bin", "deep/b.txt", "c.parquet", "d.png", "config.yaml"):
        assert _mode(tmp_path / name) == expected, f"{name}: {oct(_mode(tmp_path / name))} != {oct(expected)}"
    assert _mode(tmp_path / "deep") == 0o777 & ~umask
    assert not list(tmp_path.rglob("*.tmp"))  # no temporary file left behind


def test_folders_honour_the_umask(tmp_path: Path, umask: int) -> None:
    final = tmp_path / "out" / "dataset"
    for round_ in range(2):  # a new folder, then one replacing the first
        with atomic_dir(final) as tmp:
            assert tmp.name.startswith(".dataset.") and tmp.name.endswith(".tmp")
            (tmp / "sub").mkdir()
            (tmp / "sub" / "f.txt").write_text(str(round_))
        assert _mode(final) == 0o777 & ~umask
        assert _mode(final / "sub") == 0o777 & ~umask
        assert (final / "sub" / "f.txt").read_text() == str(round_)
    assert sorted(p.name for p in final.parent.iterdir()) == ["dataset"]


def test_temporary_is_removed_on_error(tmp_path: Path) -> None:
    with pytest.raises(RuntimeError), atomic_path(tmp_path / "f.txt") as tmp:
        tmp.write_text("half")
        raise RuntimeError("crash")
    with pytest.raises(RuntimeError), atomic_dir(tmp_path / "d"):
        raise RuntimeError("crash")
    assert list(tmp_path.iterdir()) == []


def test_crawl_output_is_readable_by_the_group(tmp_path: Path) -> None:
    root = tmp_path / "faces"
    (root / "ada_lovelace").mkdir(parents=True)
    Image.new("RGB", (40, 30), (120, 80, 40)).save(root / "ada_lovelace" / "1.jpg")
    old = os.umask(0o027)
    try:
        crawl_run(CrawlConfig(engine="local", local_root=root, workers=1), tmp_path / "raw", progress=False)
    finally:
        os.umask(old)
    raw = tmp_path / "raw"
    stored = [p for p in raw.rglob("*") if p.is_file()]
    assert {p.name for p in stored} >= {MANIFEST_NAME, "crawl_config.yaml"} and len(stored) == 3
    for path in stored:
        assert _mode(path) == 0o640, f"{path}: {oct(_mode(path))}"
    assert _mode(raw / "ada_lovelace") == 0o750
