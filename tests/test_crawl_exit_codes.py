"""``python -m crawl`` exits non-zero when the crawl ends holding no photo at all.

A crawl whose every search or download failed produced nothing it was asked for: exit 1 with one line
saying why, so DVC does not record the stage as done and ``curate`` never starts on an empty manifest. A
resumed run that adds nothing new to a crawl that holds photos is a success (exit 0).
"""

from __future__ import annotations

import subprocess
import sys
from http.server import BaseHTTPRequestHandler
from pathlib import Path

import pandas as pd
import pytest
import yaml
from PIL import Image

import crawl.run
from crawl.__main__ import main
from crawl.fetch import FetchResult, PageFetchError
from crawl.manifest import MANIFEST_NAME
from tests.http_server import serving

REPO = Path(__file__).resolve().parents[1]


def _params(tmp_path: Path, **section: object) -> Path:
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump({"crawl": section}), encoding="utf-8")
    return path


def test_search_engine_whose_result_pages_all_fail_exits_1(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    """Bing with no network: every result page fails, nothing is downloaded."""

    def unreachable(policy: object):
        def fetch_page(url: str) -> bytes:
            raise PageFetchError(url, FetchResult("failed_to_download", error="cannot resolve host"))

        return fetch_page

    monkeypatch.setattr(crawl.run, "page_fetcher", unreachable)
    ids = tmp_path / "ids.txt"
    ids.write_text("Ada Lovelace\nAlan Turing\n", encoding="utf-8")
    params = _params(tmp_path, engine="bing", identities_file=str(ids), workers=1)
    out = tmp_path / "raw"
    assert main(["--params", str(params), "--out", str(out)]) == 1
    captured = capsys.readouterr()
    assert "0 new attempts: none; 2 result pages failed" in captured.out
    errors = [line for line in captured.err.splitlines() if line.startswith("error: ")]
    assert errors == ["error: crawl: no photo downloaded for 2 identities (2 result pages failed)"]
    assert pd.read_parquet(out / MANIFEST_NAME).empty  # the manifest is kept: a rerun resumes from it


def test_every_download_failing_exits_1(tmp_path: Path) -> None:
    """A URL list whose every URL answers 404 (a local server), through the real process."""

    class NotFound(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 (http.server's name)
            self.send_response(404)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    with serving(NotFound) as port:
        urls = tmp_path / "urls.csv"
        urls.write_text(
            "identity,url\n" + "".join(f"Ada Lovelace,http://127.0.0.1:{port}/{k}.jpg\n" for k in range(3)),
            encoding="utf-8",
        )
        params = _params(
            tmp_path, engine="urls", url_list=str(urls), allow_private_hosts=True, retries=0, workers=2
        )
        cmd = [sys.executable, "-m", "crawl", "--params", str(params), "--out", str(tmp_path / "raw")]
        done = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=120)
    assert done.returncode == 1, done.stderr[-2000:]
    assert "3 new attempts: failed_to_download=3" in done.stdout
    assert done.stderr.splitlines()[-1] == (
        "error: crawl: no photo downloaded for 1 identities (none of 3 download attempts stored a photo)"
    )
    assert "Traceback" not in done.stderr


def test_resumed_crawl_with_nothing_new_exits_0(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    root = tmp_path / "faces"
    (root / "ada_lovelace").mkdir(parents=True)
    Image.new("RGB", (40, 30), (200, 100, 50)).save(root / "ada_lovelace" / "1.jpg")
    params = _params(tmp_path, engine="local", local_root=str(root), workers=1)
    args = ["--params", str(params), "--out", str(tmp_path / "raw")]
    assert main(args) == 0
    assert "1 new attempts: ok=1" in capsys.readouterr().out
    assert main(args) == 0  # nothing new, but the crawl holds a photo
    captured = capsys.readouterr()
    assert "0 new attempts: none" in captured.out and "1 photos stored in all" in captured.out
    assert "error" not in captured.err
