"""The Ray Data backend of curate: on a local two-worker Ray it writes what the local backend writes."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest

from celebref.config import load_section
from crawl.config import CrawlConfig
from crawl.run import run as crawl_run
from curate.build import CACHE_DIR
from curate.build import run as curate_run
from curate.config import CurateConfig
from tests.paths import DEMO_FACES

PARAMS = Path(__file__).resolve().parent.parent / "params.yaml"


@pytest.fixture(scope="module")
def demo_raw(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The demo's crawl (``params.yaml``'s crawl section) of the bundled photos."""
    raw = tmp_path_factory.mktemp("demo_raw")
    config = load_section(CrawlConfig, "crawl", PARAMS).model_copy(update={"local_root": DEMO_FACES})
    crawl_run(config, raw, progress=False)
    return raw


@pytest.fixture(scope="module")
def local_ray() -> Iterator[object]:
    import ray

    ray.init(num_cpus=2, object_store_memory=200 * 2**20, include_dashboard=False, log_to_driver=False)
    try:
        yield ray
    finally:
        ray.shutdown()


def _files(root: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(root)): p.read_bytes()
        for p in sorted(root.rglob("*"))
        if p.is_file() and p.relative_to(root).parts[0] != CACHE_DIR
    }


def test_ray_backend_writes_what_the_local_backend_writes(
    demo_raw: Path, local_ray: object, tmp_path: Path
) -> None:
    config = load_section(CurateConfig, "curate", PARAMS)
    assert config.backend == "local" and config.workers == 2
    local = curate_run(config, demo_raw, tmp_path / "local")
    assert local_ray.cluster_resources()["CPU"] == 2  # type: ignore[attr-defined]
    on_ray = curate_run(config.model_copy(update={"backend": "ray"}), demo_raw, tmp_path / "ray")

    assert len(local) >= 5
    pd.testing.assert_frame_equal(local, on_ray)
    rejected = [pd.read_parquet(tmp_path / out / "rejected.parquet") for out in ("local", "ray")]
    pd.testing.assert_frame_equal(*rejected)
    # Images, landmarks, manifest: every byte equal. The config and the card name the backend, and only that.
    local_files, ray_files = _files(tmp_path / "local"), _files(tmp_path / "ray")
    assert local_files.keys() == ray_files.keys()
    differ = [k for k in local_files if local_files[k] != ray_files[k]]
    assert set(differ) <= {"config.yaml", "README.md"}
    for name in differ:
        lines = [set(files[name].decode().splitlines()) for files in (local_files, ray_files)]
        assert all("backend" in line for line in lines[0] ^ lines[1]), lines[0] ^ lines[1]


def test_ray_backend_without_ray_names_the_extra(
    demo_raw: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "ray", None)  # what an install without the extra looks like
    config = CurateConfig(min_face=200, min_images=1, split={"train": 1}, backend="ray")
    with pytest.raises(ImportError, match=r"install the 'ray' extra"):
        curate_run(config, demo_raw, tmp_path / "out")
