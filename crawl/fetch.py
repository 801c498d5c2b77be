"""Fetch bytes from the web safely: checked targets, manual redirects, a byte cap, timeouts, retries.

Helpers return a :class:`FetchResult` (bytes or a status + error) instead of raising, so one bad URL
becomes one manifest row and never stops the crawl.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from urllib.parse import urljoin

import requests

from crawl.safety import UrlPolicy, check_url

__all__ = [
    "FetchPolicy",
    "FetchResult",
    "PageFetchError",
    "fetch_url",
    "read_local_file",
    "make_session",
    "thread_session",
]

REDIRECT_CODES = frozenset({301, 302, 303, 307, 308})
# Worth another try: the server may answer later. Other 4xx answers are final.
TRANSIENT_CODES = frozenset({408, 429})
CHUNK_BYTES = 64 * 1024
_MAX_ERROR_CHARS = 300


@dataclass(frozen=True)
class FetchPolicy:
    """Limits for one fetch.

    ``timeout_s`` bounds connecting and each socket read; ``max_seconds`` bounds one whole attempt
    (a server that drips bytes slowly); ``retries`` extra attempts follow transient failures (timeouts,
    connection errors, HTTP 5xx / 408 / 429) after ``backoff_s * 2**k`` seconds (k = 0, 1, ...).
    """

    url_policy: UrlPolicy
    timeout_s: float = 10.0
    max_seconds: float = 60.0
    retries: int = 2
    backoff_s: float = 1.0
    max_bytes: int = 20_000_000
    max_redirects: int = 5
    user_agent: str = "Mozilla/5.0 (compatible; celebref-crawl/0.1)"


@dataclass(frozen=True)
class FetchResult:
    """Outcome of a fetch.

    ``status`` is ``ok`` (``data`` holds the body), ``failed_to_download``, ``refused`` (the safety policy
    forbade the URL or a redirect target) or ``too_large`` (above ``max_bytes``). ``final_url`` is the URL
    after redirects; ``attempts`` counts tries including retries.
    """

    status: str
    data: bytes | None = None
    error: str | None = None
    final_url: str = ""
    attempts: int = 1


class PageFetchError(RuntimeError):
    """A search-result page could not be fetched (carries the :class:`FetchResult`)."""

    def __init__(self, url: str, result: FetchResult) -> None:
        super().__init__(f"{url}: {result.status}: {result.error}")
        self.result = result


def make_session(user_agent: str) -> requests.Session:
    """A requests session sending ``user_agent`` and asking for unencoded bodies.

    ``Accept-Encoding: identity`` keeps the byte cap honest: no compressed body can expand past it.
    """
    session = requests.Session()
    session.headers.update({"User-Agent": user_agent, "Accept-Encoding": "identity"})
    return session


_local = threading.local()


def thread_session(user_agent: str) -> requests.Session:
    """One session per thread (requests sessions are not guaranteed thread-safe)."""
    session = getattr(_local, "session", None)
    if session is None or session.headers.get("User-Agent") != user_agent:
        session = make_session(user_agent)
        _local.session = session
    return session


def _short(exc: BaseException) -> str:
    text = f"{type(exc).__name__}: {exc}"
    return text if len(text) <= _MAX_ERROR_CHARS else text[: _MAX_ERROR_CHARS - 3] + "..."


def _read_body(response: requests.Response, policy: FetchPolicy, started: float) -> tuple[FetchResult, bool]:
    length = response.headers.get("Content-Length")
    if length is not None and length.isdigit() and int(length) > policy.max_bytes:
        return FetchResult(
            "too_large", error=f"Content-Length {length} > max_bytes {policy.max_bytes}"
        ), False
    chunks: list[bytes] = []
    total = 0
    for chunk in response.iter_content(CHUNK_BYTES):
        total += len(chunk)
        if total > policy.max_bytes:
            return FetchResult("too_large", error=f"body exceeds max_bytes {policy.max_bytes}"), False
        if time.monotonic() - started > policy.max_seconds:
            return FetchResult("failed_to_download", error=f"timeout: over {policy.max_seconds} s"), True
        chunks.append(chunk)
    return FetchResult("ok", data=b"".join(chunks)), False


def _fetch_once(url: str, policy: FetchPolicy, session: requests.Session) -> tuple[FetchResult, bool]:
    """One attempt, following redirects by hand. Returns the result and whether a retry may help."""
    started = time.monotonic()
    current = url
    for hop in range(policy.max_redirects + 1):
        problem = check_url(current, policy.url_policy)
        if problem is not None:
            error = problem if hop == 0 else f"redirect to {current}: {problem}"
            return FetchResult("refused", error=error, final_url=current), False
        try:
            response = session.get(
                current,
                stream=True,
                allow_redirects=False,
                timeout=(policy.timeout_s, policy.timeout_s),
            )
        except requests.Timeout as exc:
            return FetchResult("failed_to_download", error=f"timeout: {_short(exc)}", final_url=current), True
        except requests.ConnectionError as exc:
            return FetchResult("failed_to_download", error=_short(exc), final_url=current), True
        except requests.RequestException as exc:
            return FetchResult("failed_to_download", error=_short(exc), final_url=current), False
        with response:
            code = response.status_code
            if code in REDIRECT_CODES and response.headers.get("Location"):
                current = urljoin(current, response.headers["Location"])
                continue
            if code != 200:
                transient = code >= 500 or code in TRANSIENT_CODES
                reason = f"HTTP {code} {response.reason or ''}".strip()
                return FetchResult("failed_to_download", error=reason, final_url=current), transient
            try:
                result, transient = _read_body(response, policy, started)
            except requests.RequestException as exc:
                error = _short(exc)
                return FetchResult("failed_to_download", error=error, final_url=current), True
            return replace(result, final_url=current), transient
    error = f"too many redirects (more than {policy.max_redirects})"
    return FetchResult("failed_to_download", error=error, final_url=current), False


def fetch_url(
    url: str,
    policy: FetchPolicy,
    session: requests.Session | None = None,
    *,
    sleep: Callable[[float], None] = time.sleep,
) -> FetchResult:
    """Fetch ``url`` under ``policy``; retry transient failures with exponential backoff.

    ``session`` defaults to this thread's session. Never raises for network or HTTP problems.
    """
    session = session if session is not None else thread_session(policy.user_agent)
    attempt = 0
    while True:
        result, transient = _fetch_once(url, policy, session)
        attempt += 1
        if result.status == "ok" or not transient or attempt > policy.retries:
            return replace(result, attempts=attempt)
        sleep(policy.backoff_s * 2 ** (attempt - 1))


def read_local_file(path: str | Path, max_bytes: int) -> FetchResult:
    """Read a local file under the same byte cap as a download (``final_url`` is its ``file://`` URI)."""
    path = Path(path)
    uri = path.resolve().as_uri()
    try:
        size = path.stat().st_size
        if size > max_bytes:
            return FetchResult("too_large", error=f"file size {size} > max_bytes {max_bytes}", final_url=uri)
        return FetchResult("ok", data=path.read_bytes(), final_url=uri)
    except OSError as exc:
        return FetchResult("failed_to_download", error=_short(exc), final_url=uri)
