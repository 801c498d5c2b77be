"""Crawl hardening: pinned connections (no DNS rebinding), Bing formats, movable local URLs, shared photos.

Servers listen on 127.0.0.1 only. Tests that resolve a name to a public address guard ``socket.connect``:
every connection attempt is recorded, and one to an address off this machine is refused before any packet.
"""

from __future__ import annotations

import html
import io
import json
import shutil
import ssl
import subprocess
import threading
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import requests
from PIL import Image

from crawl.config import CrawlConfig
from crawl.fetch import FetchPolicy, fetch_url, make_session
from crawl.identities import Identity
from crawl.manifest import MANIFEST_NAME, read_manifest, write_manifest
from crawl.run import ResumeState, run
from crawl.safety import Resolver, UrlPolicy, check_target
from crawl.search import SearchEngine
from tests.http_server import serving

PUBLIC = "93.184.216.34"


def _jpeg(seed: int, size: tuple[int, int] = (40, 32)) -> bytes:
    pixels = np.random.default_rng(seed).integers(0, 256, size=(size[1], size[0], 3), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, format="JPEG", quality=90)
    return buf.getvalue()


@dataclass
class PhotoServer:
    port: int
    requests: list[tuple[str, str]] = field(default_factory=list)  # (path, Host header)
    sni: list[str | None] = field(default_factory=list)  # TLS server names asked for (https only)
    redirects: dict[str, str] = field(default_factory=dict)  # path → Location
    body: bytes = field(default_factory=lambda: _jpeg(1))


def _serve(state: PhotoServer, tls: ssl.SSLContext | None = None) -> Iterator[PhotoServer]:
    lock = threading.Lock()

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

        def do_GET(self) -> None:
            with lock:
                state.requests.append((self.path, self.headers.get("Host", "")))
            location = state.redirects.get(self.path)
            code, body = (302, b"") if location else (200, state.body)
            self.send_response(code)
            if location:
                self.send_header("Location", location)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    with serving(Handler, tls) as port:
        state.port = port
        yield state


@pytest.fixture(autouse=True)
def _no_proxies(monkeypatch: pytest.MonkeyPatch) -> None:
    for var in ("HTTP_PROXY", "http_proxy", "HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.delenv(var, raising=False)


@pytest.fixture
def server() -> Iterator[PhotoServer]:
    yield from _serve(PhotoServer(port=0))


@pytest.fixture
def connects(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every address a socket tries to connect to; any but loopback is refused without a packet sent."""
    import socket

    seen: list[str] = []
    original = socket.socket.connect

    def guarded(sock: socket.socket, address: object) -> None:
        host = str(address[0]) if isinstance(address, tuple) else str(address)
        seen.append(host)
        if not (host.startswith("127.") or host == "::1"):
            raise ConnectionRefusedError(f"test guard: no connections off this machine ({host})")
        original(sock, address)  # type: ignore[arg-type]

    monkeypatch.setattr(socket.socket, "connect", guarded)
    return seen


def _rebinding(first: str, later: str) -> tuple[Resolver, list[str]]:
    """A resolver answering ``first`` once, then ``later``: a DNS server rebinding its name."""
    calls: list[str] = []
    lock = threading.Lock()

    def resolve(host: str, port: int) -> list[str]:
        with lock:
            calls.append(host)
            return [first] if len(calls) == 1 else [later]

    return resolve, calls


def _table(addresses: dict[str, list[str]]) -> Resolver:
    def resolve(host: str, port: int) -> list[str]:
        if host not in addresses:
            raise OSError(f"unknown host {host}")
        return addresses[host]

    return resolve


def _policy(resolver: Resolver, *, networks: tuple[str, ...] = (), retries: int = 0) -> FetchPolicy:
    url_policy = UrlPolicy.from_strings(
        allow_private_hosts=False, allowed_networks=networks, resolver=resolver
    )
    return FetchPolicy(url_policy=url_policy, timeout_s=2.0, retries=retries, backoff_s=0.0)


# pinned connections ---------------------------------------------------------------------------------


def test_rebinding_resolver_cannot_redirect_the_connection(server: PhotoServer, connects: list[str]) -> None:
    resolver, calls = _rebinding(PUBLIC, "127.0.0.1")
    # "localhost": where a second, system lookup would lead the connection (to the server)
    url = f"http://localhost:{server.port}/face.jpg"
    result = fetch_url(url, _policy(resolver), make_session("test"))
    # the one lookup said public; the connection went there (and the guard refused it), never to 127.0.0.1
    assert result.status == "failed_to_download" and f"connecting to {PUBLIC}" in (result.error or "")
    assert calls == ["localhost"] and connects == [PUBLIC]
    assert server.requests == []

    resolver, calls = _rebinding(PUBLIC, "127.0.0.1")
    retried = fetch_url(url, _policy(resolver, retries=2), make_session("test"), sleep=lambda _: None)
    # the retry looks the name up again, gets the loopback answer, and is refused before connecting
    assert retried.status == "refused" and retried.attempts == 2
    assert "resolves to loopback address 127.0.0.1" in (retried.error or "")
    assert len(calls) == 2 and connects == [PUBLIC, PUBLIC] and server.requests == []


def test_rebinding_in_a_crawl_is_refused_in_the_manifest(
    server: PhotoServer, connects: list[str], tmp_path: Path
) -> None:
    resolver, _ = _rebinding(PUBLIC, "127.0.0.1")
    urls = tmp_path / "urls.csv"
    urls.write_text(f"identity,url\nAda Lovelace,http://localhost:{server.port}/face.jpg\n", encoding="utf-8")
    config = CrawlConfig(engine="urls", url_list=urls, retries=2, backoff_s=0.0, timeout_s=2.0, workers=1)
    summary = run(config, tmp_path / "raw", progress=False, resolver=resolver)
    row = pd.read_parquet(tmp_path / "raw" / MANIFEST_NAME).iloc[0]
    assert summary.by_status == Counter(refused=1)
    assert row["status"] == "refused" and "loopback address 127.0.0.1" in row["error"]
    assert server.requests == [] and set(connects) == {PUBLIC}


def test_connection_goes_to_the_checked_address_with_the_host_kept(server: PhotoServer) -> None:
    server.redirects["/hop"] = f"http://cdn.test:{server.port}/face.jpg"
    server.redirects["/away"] = "http://evil.test/face.jpg"
    lookups: list[str] = []
    table = _table({"photos.test": ["127.0.0.1"], "cdn.test": ["127.0.0.1"], "evil.test": ["10.0.0.1"]})

    def resolver(host: str, port: int) -> list[str]:
        lookups.append(host)
        return table(host, port)

    policy = _policy(resolver, networks=("127.0.0.0/8",))
    result = fetch_url(f"http://photos.test:{server.port}/face.jpg", policy, make_session("test"))
    assert result.status == "ok" and result.data == server.body
    assert server.requests == [("/face.jpg", f"photos.test:{server.port}")]

    hopped = fetch_url(f"http://photos.test:{server.port}/hop", policy, make_session("test"))
    assert hopped.status == "ok" and hopped.final_url == f"http://cdn.test:{server.port}/face.jpg"
    assert server.requests[1:] == [
        ("/hop", f"photos.test:{server.port}"),
        ("/face.jpg", f"cdn.test:{server.port}"),
    ]

    away = fetch_url(f"http://photos.test:{server.port}/away", policy, make_session("test"))
    assert away.status == "refused" and "redirect to http://evil.test/face.jpg" in (away.error or "")
    assert "private address 10.0.0.1" in (away.error or "")
    assert lookups == ["photos.test", "photos.test", "cdn.test", "photos.test", "evil.test"]  # one per hop


def test_next_checked_address_is_tried_when_one_refuses(server: PhotoServer, connects: list[str]) -> None:
    # nothing listens on 127.0.0.2: the connection is refused there, then made to 127.0.0.1
    policy = _policy(_table({"photos.test": ["127.0.0.2", "127.0.0.1"]}), networks=("127.0.0.0/8",))
    result = fetch_url(f"http://photos.test:{server.port}/face.jpg", policy, make_session("test"))
    assert result.status == "ok" and connects == ["127.0.0.2", "127.0.0.1"]
    assert server.requests == [("/face.jpg", f"photos.test:{server.port}")]


def test_no_checked_address_means_no_connection(connects: list[str]) -> None:
    def failing(host: str, port: int) -> list[str]:
        raise OSError("name or service not known")

    for resolver, reason in [
        (failing, "cannot resolve host nowhere.test"),
        (_table({"nowhere.test": []}), "no address"),
    ]:
        result = fetch_url("http://nowhere.test/face.jpg", _policy(resolver), make_session("test"))
        assert result.status == "failed_to_download"
        assert "no checked address to connect to" in (result.error or "") and reason in (result.error or "")
    assert connects == []


def test_pinned_url_and_host_header() -> None:
    policy = UrlPolicy.from_strings(
        allow_private_hosts=True, allowed_networks=(), resolver=_table({"photos.test": ["::1", "127.0.0.1"]})
    )
    target = check_target("https://user:pw@Photos.Test/a/b.jpg?w=1#top", policy)
    assert target.problem is None and target.addresses == ("::1", "127.0.0.1")
    assert target.host_header == "photos.test"
    assert target.pinned_url("::1") == "https://user:pw@[::1]:443/a/b.jpg?w=1"
    assert (
        check_target("http://photos.test:8080/x", policy).pinned_url("127.0.0.1") == "http://127.0.0.1:8080/x"
    )
    assert check_target("http://photos.test:8080/x", policy).host_header == "photos.test:8080"
    with pytest.raises(ValueError, match="not a checked address"):
        target.pinned_url("10.0.0.1")


def _certificate(folder: Path, name: str) -> tuple[Path, Path]:
    if shutil.which("openssl") is None:
        pytest.skip("openssl is needed to make a test certificate")
    cert, key = folder / f"{name}.crt", folder / f"{name}.key"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", f"/CN={name}"]
        + ["-addext", f"subjectAltName=DNS:{name}", "-keyout", str(key), "-out", str(cert)],
        check=True,
        capture_output=True,
        timeout=60,
    )
    return cert, key


@pytest.fixture
def tls_server(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[PhotoServer]:
    cert, key = _certificate(tmp_path, "photos.test")
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(cert))  # trust only the test certificate
    monkeypatch.delenv("CURL_CA_BUNDLE", raising=False)
    state = PhotoServer(port=0)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    context.sni_callback = lambda sock, name, ctx: state.sni.append(name)
    yield from _serve(state, tls=context)


def test_https_connects_to_the_address_but_verifies_the_host(tls_server: PhotoServer) -> None:
    resolver = _table({"photos.test": ["127.0.0.1"], "other.test": ["127.0.0.1"]})
    policy = _policy(resolver, networks=("127.0.0.0/8",))
    result = fetch_url(f"https://photos.test:{tls_server.port}/face.jpg", policy, make_session("test"))
    assert result.status == "ok" and result.data == tls_server.body
    assert tls_server.sni == ["photos.test"]  # SNI names the host, not the address
    assert tls_server.requests == [("/face.jpg", f"photos.test:{tls_server.port}")]

    # the certificate names photos.test only: a host that merely shares the address must fail the check
    wrong = fetch_url(f"https://other.test:{tls_server.port}/face.jpg", policy, make_session("test"))
    assert wrong.status == "failed_to_download" and "other.test" in (wrong.error or "")
    assert tls_server.sni[-1] == "other.test" and len(tls_server.requests) == 1

    # a session without the pinned transport verifies against the address, and fails safe
    plain = requests.Session()
    bare = fetch_url(f"https://photos.test:{tls_server.port}/face.jpg", policy, plain)
    assert bare.status == "failed_to_download" and len(tls_server.requests) == 1


# Bing result formats --------------------------------------------------------------------------------


def _bing_tile(murl: str) -> str:
    meta = html.escape(
        json.dumps({"murl": murl, "t": "x"}, separators=(",", ":")), quote=True
    )  # as Bing writes the attribute
    return f'<li><div class="imgpt" data-tag="lgr"><a class="iusc" m="{meta}" href="#"></a></div></li>'


def test_bing_keeps_jpeg_png_and_webp_links() -> None:
    media = [
        "https://a.example/one.jpg",
        "https://b.example/two.JPEG?w=800&h=600",
        "https://c.example/three.png",
        "https://d.example/four.WebP?size=large",
        "https://e.example/anim.gif",
        "https://f.example/logo.svg",
        "https://g.example/noextension",
    ]
    tiles = "".join(_bing_tile(m) for m in media)
    related = (
        '<li><div class="imgpt" data-tag="rs"><a class="richImgLnk" href="/images/search?q=x"></a></div></li>'
    )
    broken = '<li><div class="imgpt"><a class="iusc" m="{not json"></a></div></li>'
    page = f"<ul>{tiles}{related}{broken}</ul>".encode()
    pages = iter([page, b"<ul></ul>"])
    engine = SearchEngine("bing", lambda url: next(pages), max_candidates=50)
    urls = [c.url for c in engine.candidates(Identity("ada_lovelace", "Ada Lovelace", "Ada Lovelace"))]
    assert urls == [
        "https://a.example/one.jpg",
        "https://b.example/two.JPEG?w=800&h=600",  # whole, query string included
        "https://c.example/three.png",
        "https://d.example/four.WebP?size=large",
    ]


# local files: relative URLs ------------------------------------------------------------------------


def _write_image(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


def test_local_urls_are_relative_and_resume_after_a_move(tmp_path: Path) -> None:
    project = tmp_path / "project"
    _write_image(project / "faces" / "ada_lovelace" / "1.jpg", _jpeg(1))
    _write_image(project / "faces" / "ada_lovelace" / "2.jpg", _jpeg(2))
    _write_image(project / "faces" / "grace_hopper" / "1.jpg", _jpeg(3))

    def crawl(root: Path) -> Counter[str]:
        config = CrawlConfig(engine="local", local_root=root / "faces", workers=2)
        return run(config, root / "raw", progress=False).by_status

    assert crawl(project) == Counter(ok=3)
    before = pd.read_parquet(project / "raw" / MANIFEST_NAME)
    assert sorted(before["url"]) == [
        "file:../faces/ada_lovelace/1.jpg",
        "file:../faces/ada_lovelace/2.jpg",
        "file:../faces/grace_hopper/1.jpg",
    ]

    moved = Path(shutil.move(project, tmp_path / "elsewhere" / "moved"))
    assert sum(crawl(moved).values()) == 0  # every file recognised as tried
    after = pd.read_parquet(moved / "raw" / MANIFEST_NAME)
    pd.testing.assert_frame_equal(after, before)
    assert not after["url"].str.contains(str(tmp_path), regex=False).any()


def test_older_absolute_file_urls_still_count_as_tried(tmp_path: Path) -> None:
    _write_image(tmp_path / "faces" / "ada_lovelace" / "1.jpg", _jpeg(1))
    config = CrawlConfig(engine="local", local_root=tmp_path / "faces", workers=1)
    run(config, tmp_path / "raw", progress=False)
    manifest = read_manifest(tmp_path / "raw" / MANIFEST_NAME)
    manifest["url"] = [(tmp_path / "faces" / "ada_lovelace" / "1.jpg").resolve().as_uri()]  # the old form
    write_manifest(tmp_path / "raw" / MANIFEST_NAME, manifest)
    assert sum(run(config, tmp_path / "raw", progress=False).by_status.values()) == 0


# one photo, two identities --------------------------------------------------------------------------


def test_same_photo_for_two_identities_is_ok_for_both_and_stored_once(tmp_path: Path) -> None:
    shared, own = _jpeg(7), _jpeg(8)
    faces = tmp_path / "faces"
    _write_image(faces / "ada_lovelace" / "a.jpg", shared)
    _write_image(faces / "ada_lovelace" / "b_copy.jpg", shared)
    _write_image(faces / "grace_hopper" / "g.jpg", shared)
    _write_image(faces / "grace_hopper" / "h_copy.jpg", shared)
    _write_image(faces / "grace_hopper" / "own.jpg", own)
    config = CrawlConfig(engine="local", local_root=faces, workers=2)
    out = tmp_path / "raw"
    run(config, out, progress=False)

    frame = pd.read_parquet(out / MANIFEST_NAME)
    rows = {"/".join(row["url"].split("/")[-2:]): row for _, row in frame.iterrows()}
    first, copy = rows["ada_lovelace/a.jpg"], rows["ada_lovelace/b_copy.jpg"]
    shared_row, again = rows["grace_hopper/g.jpg"], rows["grace_hopper/h_copy.jpg"]
    assert (
        first["status"] == "ok"
        and first["path"].startswith("ada_lovelace/")
        and pd.isna(first["duplicate_of"])
    )
    assert copy["status"] == "duplicate" and copy["duplicate_of"] == first["path"]  # same identity: repeat
    assert shared_row["status"] == "ok" and shared_row["identity"] == "grace_hopper"
    assert shared_row["sha256"] == first["sha256"]
    assert shared_row["path"] == shared_row["duplicate_of"] == first["path"]  # shared, visibly
    assert again["status"] == "duplicate" and again["duplicate_of"] == first["path"]
    assert rows["grace_hopper/own.jpg"]["path"].startswith("grace_hopper/")
    assert sorted(p.relative_to(out).as_posix() for p in out.rglob("*.jpg")) == sorted(
        [first["path"], rows["grace_hopper/own.jpg"]["path"]]
    )

    state = ResumeState.from_manifest(frame, retry_failed=False)
    assert state.ok_counts == Counter(ada_lovelace=1, grace_hopper=2)
    assert first["sha256"] in state.owned["grace_hopper"]

    # a later run finds the same photo once more for grace: she already has it, so it is a repeat
    _write_image(faces / "grace_hopper" / "z_again.jpg", shared)
    assert run(config, out, progress=False).by_status == Counter(duplicate=1)
    last = pd.read_parquet(out / MANIFEST_NAME).iloc[-1]
    assert last["identity"] == "grace_hopper" and last["duplicate_of"] == first["path"]
