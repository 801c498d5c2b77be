"""The crawl against a real HTTP server on 127.0.0.1: statuses, limits, safety, retries, resume, dedup."""

from __future__ import annotations

import hashlib
import io
import struct
import threading
import time
import zlib
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from crawl.config import CrawlConfig
from crawl.fetch import FetchPolicy, fetch_url
from crawl.manifest import COLUMNS, MANIFEST_NAME
from crawl.run import CONFIG_NAME, run
from crawl.safety import UrlPolicy
from tests.http_server import serving

SLOW_S = 1.0  # the slow route answers after this long; tests use timeouts far below it
TIMEOUT_S = 0.25


def _encode(width: int, height: int, fmt: str, seed: int) -> bytes:
    rng = np.random.default_rng(seed)
    pixels = rng.integers(0, 256, size=(height, width, 3), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, format=fmt, **({"quality": 90} if fmt == "JPEG" else {}))
    return buf.getvalue()


def _png_header_only(width: int, height: int) -> bytes:
    """A PNG whose header claims ``width x height`` pixels (a decompression bomb's calling card)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", ihdr)
        + chunk(b"IDAT", zlib.compress(b"\x00" * 16))
        + chunk(b"IEND", b"")
    )


@dataclass
class Server:
    base: str
    bodies: dict[str, bytes]
    hits: Counter[str] = field(default_factory=Counter)
    flags: dict[str, bool] = field(default_factory=dict)

    def url(self, route: str) -> str:
        return f"{self.base}/{route}"


def _make_bodies() -> dict[str, bytes]:
    good1 = _encode(64, 48, "JPEG", 1)
    big = _encode(400, 400, "PNG", 9)  # ~480 KB of noise, above the tests' max_bytes
    return {
        "good1.jpg": good1,
        "good2.png": _encode(40, 56, "PNG", 2),
        "good3.jpg": _encode(50, 50, "JPEG", 3),
        "good4.jpg": _encode(52, 52, "JPEG", 4),
        "copy_of_good1.jpg": good1,
        "truncated.jpg": good1[: len(good1) // 2],
        "not_image.jpg": b"<html><body>Not found, but with status 200</body></html>",
        "small.jpg": _encode(12, 10, "JPEG", 5),
        "bomb.png": _png_header_only(30_000, 30_000),  # 900 M pixels claimed in a few bytes
        "big.png": big,
        "big_stream.png": big,
    }


@pytest.fixture
def server(monkeypatch: pytest.MonkeyPatch) -> Iterator[Server]:
    for var in ("HTTP_PROXY", "http_proxy", "HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.delenv(var, raising=False)  # talk to the test server directly
    bodies = _make_bodies()
    state = Server(base="", bodies=bodies)
    lock = threading.Lock()

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: object) -> None:  # keep test output quiet
            pass

        def _send(self, code: int, body: bytes = b"", headers: dict[str, str] | None = None) -> None:
            self.send_response(code)
            for key, value in (headers or {}).items():
                self.send_header(key, value)
            if "Content-Length" not in (headers or {}) and not self.path.endswith("_stream.png"):
                self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self) -> None:
            route = self.path.lstrip("/")
            with lock:
                state.hits[route] += 1
                hits = state.hits[route]
            try:
                if route == "slow.jpg":
                    time.sleep(SLOW_S)
                    self._send(200, bodies["good1.jpg"])
                elif route == "missing.jpg":
                    self._send(404, b"no such file")
                elif route == "flaky.jpg":  # two server errors, then the image
                    if hits <= 2:
                        self._send(503)
                    else:
                        self._send(200, bodies["good4.jpg"])
                elif route == "always_503.jpg":
                    self._send(503)
                elif route == "switch.jpg":
                    if state.flags.get("switch_on"):
                        self._send(200, bodies["good3.jpg"])
                    else:
                        self._send(404)
                elif route == "redirect_good":
                    self._send(302, headers={"Location": "/good3.jpg"})
                elif route == "redirect_loop":
                    self._send(302, headers={"Location": "/redirect_loop"})
                elif route == "redirect_private":
                    self._send(302, headers={"Location": "http://10.0.0.1/face.jpg"})
                elif route == "redirect_link_local":
                    self._send(301, headers={"Location": "http://169.254.169.254/latest/meta-data/"})
                elif route in bodies:
                    self._send(200, bodies[route])
                else:
                    self._send(404)
            except (BrokenPipeError, ConnectionResetError):
                pass  # the client gave up (timeout tests)

    with serving(Handler) as port:
        state.base = f"http://127.0.0.1:{port}"
        yield state


def _write_urls(path: Path, rows: list[tuple[str, str]]) -> Path:
    path.write_text("identity,url\n" + "".join(f"{who},{url}\n" for who, url in rows), encoding="utf-8")
    return path


def _config(url_list: Path | None, **overrides: object) -> CrawlConfig:
    params: dict[str, object] = dict(
        engine="urls",
        url_list=url_list,
        allow_private_hosts=True,
        timeout_s=TIMEOUT_S,
        max_seconds_per_file=5.0,
        retries=2,
        backoff_s=0.01,
        max_bytes=100_000,
        workers=4,
        min_side=16,
    )
    params.update(overrides)
    return CrawlConfig(**params)


def _rows(out: Path) -> dict[str, pd.Series]:
    frame = pd.read_parquet(out / MANIFEST_NAME)
    assert list(frame.columns) == list(COLUMNS)
    return {row["url"]: row for _, row in frame.iterrows()}


def test_every_kind_of_url_gets_its_status(server: Server, tmp_path: Path) -> None:
    routes = [
        "good1.jpg",
        "good2.png",
        "copy_of_good1.jpg",
        "truncated.jpg",
        "not_image.jpg",
        "missing.jpg",
        "slow.jpg",
        "big.png",
        "big_stream.png",
        "bomb.png",
        "small.jpg",
        "flaky.jpg",
        "always_503.jpg",
        "redirect_good",
        "redirect_loop",
    ]
    urls = _write_urls(tmp_path / "urls.csv", [("Ada Lovelace", server.url(r)) for r in routes])
    out = tmp_path / "raw"
    summary = run(_config(urls), out, progress=False)
    rows = _rows(out)
    status = {route: rows[server.url(route)]["status"] for route in routes}
    assert status == {
        "good1.jpg": "ok",
        "good2.png": "ok",
        "copy_of_good1.jpg": "duplicate",
        "truncated.jpg": "failed_to_decode",
        "not_image.jpg": "failed_to_decode",
        "missing.jpg": "failed_to_download",
        "slow.jpg": "failed_to_download",
        "big.png": "too_large",
        "big_stream.png": "too_large",
        "bomb.png": "failed_to_decode",
        "small.jpg": "too_small",
        "flaky.jpg": "ok",
        "always_503.jpg": "failed_to_download",
        "redirect_good": "ok",
        "redirect_loop": "failed_to_download",
    }
    assert summary.by_status == Counter(status.values())

    good1 = rows[server.url("good1.jpg")]
    sha = hashlib.sha256(server.bodies["good1.jpg"]).hexdigest()
    assert (
        good1["identity"] == "ada_lovelace" and good1["name"] == "Ada Lovelace" and good1["engine"] == "urls"
    )
    assert good1["sha256"] == sha and good1["bytes"] == len(server.bodies["good1.jpg"])
    assert (good1["width"], good1["height"]) == (64, 48)
    assert good1["path"] == f"ada_lovelace/{sha[:16]}.jpg" and pd.isna(good1["error"])
    assert (out / good1["path"]).read_bytes() == server.bodies["good1.jpg"]
    assert rows[server.url("good2.png")]["path"].endswith(".png")
    assert (rows[server.url("good2.png")]["width"], rows[server.url("good2.png")]["height"]) == (40, 56)

    dup = rows[server.url("copy_of_good1.jpg")]
    assert dup["duplicate_of"] == good1["path"] and pd.isna(dup["path"]) and dup["sha256"] == sha

    assert "HTTP 404" in rows[server.url("missing.jpg")]["error"]
    assert "timeout" in rows[server.url("slow.jpg")]["error"].lower()
    assert "Content-Length" in rows[server.url("big.png")]["error"]
    assert "exceeds max_bytes" in rows[server.url("big_stream.png")]["error"]
    assert "decompression bomb" in rows[server.url("bomb.png")]["error"]
    assert "truncated" in rows[server.url("truncated.jpg")]["error"].lower()
    assert rows[server.url("truncated.jpg")]["sha256"] is not None
    assert "min_side" in rows[server.url("small.jpg")]["error"]
    assert "HTTP 503" in rows[server.url("always_503.jpg")]["error"]
    assert "too many redirects" in rows[server.url("redirect_loop")]["error"]
    assert (
        rows[server.url("redirect_good")]["sha256"] == hashlib.sha256(server.bodies["good3.jpg"]).hexdigest()
    )

    # retries: transient failures (5xx, timeouts) are retried, a 404 is not
    assert server.hits["missing.jpg"] == 1
    assert server.hits["flaky.jpg"] == 3
    assert server.hits["always_503.jpg"] == 3
    assert server.hits["slow.jpg"] == 3

    # only ok rows have files; nothing else lands in the identity folder
    stored = sorted(p.relative_to(out).as_posix() for p in (out / "ada_lovelace").iterdir())
    ok_paths = sorted(r["path"] for r in rows.values() if r["status"] == "ok")
    assert stored == ok_paths and len(stored) == 4
    assert (out / CONFIG_NAME).is_file()
    assert all(r["fetched_at"].endswith("Z") for r in rows.values())


def test_resume_downloads_nothing_new(server: Server, tmp_path: Path) -> None:
    routes = ["good1.jpg", "good2.png", "missing.jpg", "truncated.jpg"]
    urls = _write_urls(tmp_path / "urls.csv", [("Ada Lovelace", server.url(r)) for r in routes])
    out = tmp_path / "raw"
    first = run(_config(urls), out, progress=False)
    assert sum(first.by_status.values()) == 4
    before = pd.read_parquet(out / MANIFEST_NAME)
    mtimes = {p: p.stat().st_mtime_ns for p in out.rglob("*.jpg")}
    hits_before = Counter(server.hits)

    second = run(_config(urls), out, progress=False)
    assert sum(second.by_status.values()) == 0
    assert server.hits == hits_before
    pd.testing.assert_frame_equal(pd.read_parquet(out / MANIFEST_NAME), before)
    assert {p: p.stat().st_mtime_ns for p in out.rglob("*.jpg")} == mtimes


def test_identity_at_max_images_is_skipped_and_extra_urls_not_fetched(server: Server, tmp_path: Path) -> None:
    rows = [("Ada Lovelace", server.url(r)) for r in ("good1.jpg", "good3.jpg", "good4.jpg", "good2.png")]
    urls = _write_urls(tmp_path / "urls.csv", rows)
    out = tmp_path / "raw"
    summary = run(_config(urls, max_images=2, workers=4), out, progress=False)
    assert summary.by_status == Counter(ok=2)
    assert server.hits["good4.jpg"] == 0 and server.hits["good2.png"] == 0

    again = run(_config(urls, max_images=2), out, progress=False)
    assert again.skipped_identities == 1 and sum(again.by_status.values()) == 0
    more = run(_config(urls, max_images=3), out, progress=False)  # a larger cap resumes the identity
    assert more.by_status == Counter(ok=1) and server.hits["good4.jpg"] == 1


def test_same_bytes_for_two_identities_are_stored_once_and_shared(server: Server, tmp_path: Path) -> None:
    urls = _write_urls(
        tmp_path / "urls.csv",
        [("Ada Lovelace", server.url("good1.jpg")), ("Grace Hopper", server.url("copy_of_good1.jpg"))],
    )
    out = tmp_path / "raw"
    run(_config(urls), out, progress=False)
    rows = _rows(out)
    first, second = rows[server.url("good1.jpg")], rows[server.url("copy_of_good1.jpg")]
    assert first["status"] == "ok" and first["identity"] == "ada_lovelace" and pd.isna(first["duplicate_of"])
    assert second["status"] == "ok" and second["identity"] == "grace_hopper"
    assert second["path"] == second["duplicate_of"] == first["path"]
    assert not (out / "grace_hopper").exists()
    assert len(list(out.rglob("*.jpg"))) == 1


def test_retry_failed_tries_failed_downloads_again(server: Server, tmp_path: Path) -> None:
    urls = _write_urls(tmp_path / "urls.csv", [("Ada Lovelace", server.url("switch.jpg"))])
    out = tmp_path / "raw"
    assert run(_config(urls), out, progress=False).by_status == Counter(failed_to_download=1)
    server.flags["switch_on"] = True
    assert sum(run(_config(urls), out, progress=False).by_status.values()) == 0
    assert run(_config(urls, retry_failed=True), out, progress=False).by_status == Counter(ok=1)
    statuses = pd.read_parquet(out / MANIFEST_NAME)["status"].tolist()
    assert statuses == ["failed_to_download", "ok"]  # one row per attempt


def test_files_left_by_a_crash_are_kept_not_rewritten(server: Server, tmp_path: Path) -> None:
    urls = _write_urls(tmp_path / "urls.csv", [("Ada Lovelace", server.url("good1.jpg"))])
    out = tmp_path / "raw"
    run(_config(urls), out, progress=False)
    stored = next(out.rglob("*.jpg"))
    mtime = stored.stat().st_mtime_ns
    (out / MANIFEST_NAME).unlink()  # as if the run died between the file and the manifest write
    summary = run(_config(urls), out, progress=False)
    assert summary.by_status == Counter(ok=1)
    assert stored.stat().st_mtime_ns == mtime
    assert _rows(out)[server.url("good1.jpg")]["path"] == stored.relative_to(out).as_posix()


def test_loopback_refused_without_allow_private_hosts(server: Server, tmp_path: Path) -> None:
    urls = _write_urls(
        tmp_path / "urls.csv",
        [("Ada Lovelace", server.url("good1.jpg")), ("Ada Lovelace", "file:///etc/passwd")],
    )
    out = tmp_path / "raw"
    summary = run(_config(urls, allow_private_hosts=False), out, progress=False)
    rows = _rows(out)
    assert summary.by_status == Counter(refused=2)
    assert "loopback" in rows[server.url("good1.jpg")]["error"]
    assert "scheme 'file'" in rows["file:///etc/passwd"]["error"]
    assert server.hits["good1.jpg"] == 0  # refused before any connection


def test_redirect_to_private_or_link_local_is_refused(server: Server, tmp_path: Path) -> None:
    routes = ["redirect_private", "redirect_link_local", "redirect_good"]
    rows_in = [("Ada Lovelace", server.url(r)) for r in routes] + [("Ada Lovelace", "http://10.0.0.1/x.jpg")]
    urls = _write_urls(tmp_path / "urls.csv", rows_in)
    out = tmp_path / "raw"
    # private hosts not allowed; only the test server's own address is exempt
    config = _config(urls, allow_private_hosts=False, allowed_networks=("127.0.0.1/32",))
    run(config, out, progress=False)
    rows = _rows(out)
    private = rows[server.url("redirect_private")]
    assert private["status"] == "refused"
    assert "redirect to http://10.0.0.1/face.jpg" in private["error"] and "private" in private["error"]
    link_local = rows[server.url("redirect_link_local")]
    assert link_local["status"] == "refused" and "link-local" in link_local["error"]
    assert rows["http://10.0.0.1/x.jpg"]["status"] == "refused"
    assert rows[server.url("redirect_good")]["status"] == "ok"  # same-host redirects still work


def test_fetch_url_backoff_doubles(server: Server) -> None:
    sleeps: list[float] = []
    policy = FetchPolicy(
        url_policy=UrlPolicy(allow_private_hosts=True), timeout_s=TIMEOUT_S, retries=3, backoff_s=0.5
    )
    result = fetch_url(server.url("always_503.jpg"), policy, sleep=sleeps.append)
    assert result.status == "failed_to_download" and result.attempts == 4
    assert sleeps == [0.5, 1.0, 2.0]


def test_fetch_url_total_time_cap(server: Server) -> None:
    # a read timeout longer than the server's delay, but a whole-attempt cap shorter than it
    policy = FetchPolicy(
        url_policy=UrlPolicy(allow_private_hosts=True), timeout_s=5.0, max_seconds=0.2, retries=0
    )
    started = time.monotonic()
    result = fetch_url(server.url("slow.jpg"), policy)
    # the body arrives in one piece after SLOW_S; the cap is checked while streaming it
    assert result.status == "failed_to_download" and "timeout" in (result.error or "")
    assert time.monotonic() - started < SLOW_S + 2.0


def test_search_engine_run_end_to_end(server: Server, tmp_path: Path) -> None:
    """Engine ``bing`` with a saved result page whose image URLs point at the test server."""
    meta = "{&quot;murl&quot;:&quot;URL&quot;,&quot;t&quot;:&quot;x&quot;}"
    tile = f'<li><div class="imgpt"><a class="iusc" m="{meta}"></a></div></li>'
    page = (
        "<ul>" + "".join(tile.replace("URL", server.url(r)) for r in ("good1.jpg", "missing.jpg")) + "</ul>"
    )
    requested: list[str] = []

    def fetch_page(url: str) -> bytes:
        requested.append(url)
        return page.encode() if len(requested) == 1 else b"<ul></ul>"

    ids = tmp_path / "ids.txt"
    ids.write_text("# people\nAda Lovelace\n", encoding="utf-8")
    config = _config(None, engine="bing", identities_file=ids)
    out = tmp_path / "raw"
    summary = run(config, out, page_fetch=fetch_page, progress=False)
    rows = _rows(out)
    assert summary.by_status == Counter(ok=1, failed_to_download=1)
    assert requested[0] == "https://www.bing.com/images/async?q=Ada+Lovelace&first=0"
    assert len(requested) == 2  # the empty second page ends the listing
    ok = rows[server.url("good1.jpg")]
    assert ok["engine"] == "bing" and ok["query"] == "Ada Lovelace" and ok["status"] == "ok"
