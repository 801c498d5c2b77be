"""Crawl engines: search-result parsing on saved pages, the local-folder engine, the demo crawl, the CLI."""

from __future__ import annotations

import subprocess
import sys
from collections import Counter
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import numpy as np
import pandas as pd
import pytest
import yaml
from PIL import Image

from crawl.config import CrawlConfig
from crawl.fetch import FetchResult, PageFetchError
from crawl.identities import Identity
from crawl.local import LocalFolderEngine, deal_distractors, list_local_identities
from crawl.manifest import MANIFEST_NAME, local_path
from crawl.run import run
from crawl.search import SearchEngine

REPO = Path(__file__).resolve().parents[1]
PAGES = REPO / "tests" / "data" / "search_pages"
DEMO = REPO / "tests" / "data" / "demo_faces"
OBAMA = Identity("barack_obama", "Barack Obama", "Barack Obama")


def _pages(first_page: str):
    """A page fetcher serving ``first_page`` for the first result page and an empty page after it."""
    calls: list[str] = []

    def fetch_page(url: str) -> bytes:
        calls.append(url)
        return (PAGES / first_page).read_bytes() if len(calls) == 1 else b""

    return fetch_page, calls


# search engines on saved result pages ---------------------------------------------------------------


def test_bing_result_page() -> None:
    fetch_page, calls = _pages("bing_async_barack_obama.html")
    engine = SearchEngine("bing", fetch_page, max_candidates=50)
    urls = [c.url for c in engine.candidates(OBAMA)]
    # JPEG and PNG media URLs are kept; the related-search tile (no media URL) drops out
    assert urls == [
        "https://upload.wikimedia.org/wikipedia/commons/8/8d/President_Barack_Obama.jpg",
        "https://www.whitehouse.gov/wp-content/uploads/2021/01/44_barack_obama.jpg",
        "https://static.example.org/images/obama-portrait.png",
        "https://cdn.news.example.com/photos/2016/obama_farewell_speech.JPG.jpg",
    ]
    assert calls[0] == "https://www.bing.com/images/async?q=Barack+Obama&first=0"
    assert calls[1] == "https://www.bing.com/images/async?q=Barack+Obama&first=20"
    assert len(engine.page_urls("Barack Obama")) == 3  # 50 candidates at 20 per page


def test_google_result_page() -> None:
    fetch_page, calls = _pages("google_barack_obama.html")
    urls = [c.url for c in SearchEngine("google", fetch_page, max_candidates=100).candidates(OBAMA)]
    # the page writes "=" as \u003d inside the script; the parser decodes it
    assert urls == [
        "https://upload.wikimedia.org/wikipedia/commons/8/8d/President_Barack_Obama.jpg",
        "https://www.obamalibrary.gov/sites/default/files/styles/portrait/obama_official=1.jpg",
        "https://images.example.net/press/obama_2012.png",
    ]
    query = parse_qs(urlsplit(calls[0]).query)
    assert query["q"] == ["Barack Obama"] and query["tbm"] == ["isch"]


def test_baidu_result_page_decodes_obfuscated_urls() -> None:
    fetch_page, calls = _pages("baidu_acjson_barack_obama.json")
    candidates = list(SearchEngine("baidu", fetch_page, max_candidates=30).candidates(OBAMA))
    assert [c.url for c in candidates] == [
        "https://img.example.cn/upload/2016/obama_portrait.jpg",
        # no objURL: icrawler falls back to the hover thumbnail
        "https://img2.baidu.com/it/u=2233445566,1122334455&fm=253&fmt=auto&app=120&f=JPEG?w=640&h=427",
        "http://news.example.com.cn/photo/20170120/obama-farewell.jpeg",
    ]
    assert all(c.query == "Barack Obama" for c in candidates)
    assert "word=Barack+Obama&pn=0" in calls[0]


def test_flickr_search_and_sizes() -> None:
    requested: list[str] = []

    def fetch_page(url: str) -> bytes:
        requested.append(url)
        query = parse_qs(urlsplit(url).query)
        assert query["api_key"] == ["test-key"]
        if query["method"] == ["flickr.photos.getSizes"]:
            return (PAGES / f"flickr_sizes_{query['photo_id'][0]}.json").read_bytes()
        if query["page"] == ["1"]:
            assert query["text"] == ["Barack Obama"]
            return (PAGES / "flickr_search_barack_obama.json").read_bytes()
        return b'{"photos": {"page": 2, "pages": 1, "photo": []}, "stat": "ok"}'

    engine = SearchEngine("flickr", fetch_page, max_candidates=100, apikey="test-key")
    urls = [c.url for c in engine.candidates(OBAMA)]
    # the largest available size of each photo; the photo whose sizes call fails is skipped
    assert urls == [
        "https://live.staticflickr.com/7024/6838813564_4c1d2e3f5a_o.jpg",
        "https://live.staticflickr.com/8214/8387574931_7a6b5c4d3e_h.jpg",
    ]
    assert sum("getSizes" in u for u in requested) == 3


def test_failed_result_page_stops_listing_and_is_counted() -> None:
    def fetch_page(url: str) -> bytes:
        raise PageFetchError(url, FetchResult("failed_to_download", error="HTTP 429 Too Many Requests"))

    engine = SearchEngine("bing", fetch_page, max_candidates=100)
    assert list(engine.candidates(OBAMA)) == []
    assert engine.page_errors == 1


def test_bad_search_filters() -> None:
    with pytest.raises(ValueError, match="bad search_filters for engine 'bing'.*unsupported filter 'mood'"):
        SearchEngine("bing", lambda url: b"", max_candidates=10, filters={"mood": "happy"})
    with pytest.raises(ValueError, match="must be one of the following: face, portrait"):
        SearchEngine("bing", lambda url: b"", max_candidates=10, filters={"people": "crowd"})
    engine = SearchEngine(
        "bing", lambda url: b"", max_candidates=10, filters={"people": "face", "size": "large"}
    )
    assert "qft=+filterui:face-face+filterui:imagesize-large" in engine.page_urls("x")[0]


# local engine -----------------------------------------------------------------------------------------


def _image(path: Path, seed: int, size: tuple[int, int] = (40, 30)) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    pixels = np.random.default_rng(seed).integers(0, 256, size=(size[1], size[0], 3), dtype=np.uint8)
    Image.fromarray(pixels).save(path)


def test_deal_distractors_round_robin() -> None:
    paths = [Path(f"d{i:02d}.jpg") for i in range(11)]
    dealt = deal_distractors(paths, ["joe_biden", "barack_obama"], 3)
    assert dealt["barack_obama"] == [paths[0], paths[2], paths[4]]
    assert dealt["joe_biden"] == [paths[1], paths[3], paths[5]]
    few = deal_distractors(paths[:3], ["a", "b"], 5)
    assert few == {"a": [paths[0], paths[2]], "b": [paths[1]]}
    assert deal_distractors(paths, ["a"], 0) == {"a": []}


def test_local_engine_skips_non_images_and_deals_distractors(tmp_path: Path) -> None:
    root = tmp_path / "faces"
    _image(root / "zoe_b" / "2.png", 1)
    _image(root / "zoe_b" / "1.JPG", 2)
    (root / "zoe_b" / "notes.txt").write_text("not an image")
    (root / "zoe_b" / ".hidden.jpg").write_bytes(b"x")
    _image(root / "adam_a" / "1.jpg", 3)
    for i in range(5):
        _image(root / "_noise" / f"n{i}.jpg", 10 + i)
    (root / "_noise" / "SOURCES.tsv").write_text("file\tsource\n")
    (root / "README.md").write_text("# faces")

    identities = list_local_identities(root)
    assert [(i.slug, i.name) for i in identities] == [("adam_a", "Adam A"), ("zoe_b", "Zoe B")]
    engine = LocalFolderEngine(root, identities, distractor_dir="_noise", distractors_per_identity=2)
    adam = [c.local_path.relative_to(root).as_posix() for c in engine.candidates(identities[0])]
    zoe = [c.local_path.relative_to(root).as_posix() for c in engine.candidates(identities[1])]
    assert adam == ["adam_a/1.jpg", "_noise/n0.jpg", "_noise/n2.jpg"]
    assert zoe == ["zoe_b/1.JPG", "zoe_b/2.png", "_noise/n1.jpg", "_noise/n3.jpg"]
    first = next(engine.candidates(identities[0]))
    assert first.url == (root / "adam_a" / "1.jpg").resolve().as_uri() and first.query is None

    with pytest.raises(FileNotFoundError, match="distractor_dir '_missing'"):
        LocalFolderEngine(root, identities, distractor_dir="_missing", distractors_per_identity=1)


def test_demo_crawl_over_bundled_faces(tmp_path: Path) -> None:
    config = CrawlConfig(
        engine="local", local_root=DEMO, distractor_dir="_distractors", distractors_per_identity=3, workers=2
    )
    out = tmp_path / "raw"
    summary = run(config, out, progress=False)
    frame = pd.read_parquet(out / MANIFEST_NAME)
    assert summary.by_status == Counter(ok=len(frame)) and (frame["status"] == "ok").all()
    own = {slug: len(list((DEMO / slug).glob("*.jpg"))) for slug in ("barack_obama", "joe_biden")}
    for slug, n_own in own.items():
        rows = frame[frame["identity"] == slug]
        from_distractors = rows["url"].str.contains("/_distractors/")
        assert int(from_distractors.sum()) == 3
        assert int((~from_distractors).sum()) == n_own
        assert rows["url"].str.startswith("file:../").all()  # relative to the crawl folder
    names = dict(zip(frame["identity"], frame["name"], strict=False))
    assert names == {"barack_obama": "Barack Obama", "joe_biden": "Joe Biden"}
    for row in frame.itertuples():
        stored = out / row.path
        source = local_path(row.url, out)
        assert source is not None and source.resolve().is_relative_to(DEMO.resolve())
        assert stored.is_file() and stored.read_bytes() == source.read_bytes()
    assert not any(p.suffix in (".tsv", ".md") for p in out.rglob("*"))


def test_cli_runs_the_stage(tmp_path: Path) -> None:
    root = tmp_path / "faces"
    _image(root / "ada_lovelace" / "1.jpg", 1)
    _image(root / "ada_lovelace" / "2.jpg", 2, size=(8, 8))
    params = tmp_path / "params.yaml"
    section = {"engine": "local", "local_root": str(root), "min_side": 16}
    params.write_text(yaml.safe_dump({"crawl": section}), encoding="utf-8")
    out = tmp_path / "raw"
    cmd = [sys.executable, "-m", "crawl", "--params", str(params), "--out", str(out)]
    done = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=120, check=True)
    assert "crawl: 1 identities (0 already done), 2 new attempts: ok=1 too_small=1" in done.stdout
    assert yaml.safe_load((out / "crawl_config.yaml").read_text())["min_side"] == 16
    assert len(pd.read_parquet(out / MANIFEST_NAME)) == 2
