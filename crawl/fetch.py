"""Fetch bytes from the web safely: checked, pinned targets, manual redirects, a byte cap, timeouts, retries.

Every hop is checked by :func:`crawl.safety.check_target`, and the request goes to one of the addresses
that passed (the URL names the address, the ``Host`` header the host): the name is never looked up a
second time. :class:`PinnedAdapter` carries the host name into TLS, for the server name and the
certificate check, and never sends through a proxy, which would look the name up itself.

Helpers return a :class:`FetchResult` (bytes or a status + error) instead of raising, so one bad URL
becomes one manifest row and never stops the crawl.
"""

from __future__ import annotations

import ipaddress
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any
from urllib.parse import urljoin, urlsplit

import requests
from requests.adapters import HTTPAdapter
from urllib3.exceptions import NewConnectionError

from crawl.safety import Target, UrlPolicy, check_target

__all__ = [
    "FetchPolicy",
    "FetchResult",
    "PageFetchError",
    "PinnedAdapter",
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


def _is_address(host: str) -> bool:
    try:
        ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        return False
    return True


def _tls_name(url: str, headers: Mapping[str, str]) -> str | None:
    """The host name to verify when ``url`` names an address and the ``Host`` header names a host."""
    host_header = headers.get("Host")
    url_host = urlsplit(url).hostname
    if not host_header or url_host is None or not _is_address(url_host):
        return None
    name = urlsplit(f"//{host_header}").hostname
    return name if name and name != url_host else None


class PinnedAdapter(HTTPAdapter):
    """A transport for pinned requests: the URL names the checked address, the ``Host`` header the host.

    For https the host from the ``Host`` header becomes the TLS server name (SNI) and the name the
    certificate must match, so verification is exactly as if the host had been connected to by name.
    Connection pools are keyed by address and server name, so a kept-alive connection is only reused for
    the same checked address. Proxies are never used: a proxy would resolve the name again.
    """

    def build_connection_pool_key_attributes(
        self, request: requests.PreparedRequest, verify: bool | str, cert: Any = None
    ) -> tuple[dict[str, Any], dict[str, Any]]:
        host_params, pool_kwargs = super().build_connection_pool_key_attributes(request, verify, cert)
        name = _tls_name(request.url or "", request.headers)
        if host_params["scheme"] == "https" and name is not None:
            pool_kwargs["server_hostname"] = name
            pool_kwargs["assert_hostname"] = name
        return host_params, pool_kwargs

    def send(
        self,
        request: requests.PreparedRequest,
        stream: bool = False,
        timeout: Any = None,
        verify: bool | str = True,
        cert: Any = None,
        proxies: Mapping[str, str] | None = None,  # ignored: see the class docstring
    ) -> requests.Response:
        return super().send(request, stream=stream, timeout=timeout, verify=verify, cert=cert, proxies=None)


def make_session(user_agent: str) -> requests.Session:
    """A requests session with :class:`PinnedAdapter`, sending ``user_agent``, asking for unencoded bodies.

    ``Accept-Encoding: identity`` keeps the byte cap honest: no compressed body can expand past it.
    """
    session = requests.Session()
    for prefix in ("http://", "https://"):
        session.mount(prefix, PinnedAdapter())
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


@dataclass(frozen=True)
class _Failure:
    result: FetchResult
    transient: bool  # whether a retry may help


def _never_connected(exc: requests.RequestException) -> bool:
    """Whether ``exc`` failed to open the connection (so nothing was sent and another address may do)."""
    if isinstance(exc, requests.ConnectTimeout):
        return True
    reason = getattr(exc.args[0], "reason", None) if exc.args else None
    return isinstance(exc, requests.ConnectionError) and isinstance(reason, NewConnectionError)


def _request_error(exc: requests.RequestException, address: str | None = None) -> str:
    prefix = "timeout: " if isinstance(exc, requests.Timeout) else ""
    where = f"connecting to {address}: " if address is not None else ""
    return f"{prefix}{where}{_short(exc)}"


def _get_pinned(
    target: Target, policy: FetchPolicy, session: requests.Session, started: float
) -> requests.Response | _Failure:
    """GET ``target`` from its checked addresses in turn, moving on only while none accepts a connection."""
    url = target.url
    error = ""
    for address in target.addresses:
        if time.monotonic() - started > policy.max_seconds:
            error = f"timeout: over {policy.max_seconds} s" + (f" ({error})" if error else "")
            break
        try:
            return session.get(
                target.pinned_url(address),
                headers={"Host": target.host_header},
                stream=True,
                allow_redirects=False,
                timeout=(policy.timeout_s, policy.timeout_s),
            )
        except requests.RequestException as exc:
            if _never_connected(exc):
                error = _request_error(exc, address)
                continue
            transient = isinstance(exc, (requests.Timeout, requests.ConnectionError))
            return _Failure(
                FetchResult("failed_to_download", error=_request_error(exc), final_url=url), transient
            )
    return _Failure(FetchResult("failed_to_download", error=error, final_url=url), True)


def _fetch_once(url: str, policy: FetchPolicy, session: requests.Session) -> tuple[FetchResult, bool]:
    """One attempt, following redirects by hand. Returns the result and whether a retry may help."""
    started = time.monotonic()
    current = url
    for hop in range(policy.max_redirects + 1):
        target = check_target(current, policy.url_policy)
        if target.problem is not None:
            error = target.problem if hop == 0 else f"redirect to {current}: {target.problem}"
            return FetchResult("refused", error=error, final_url=current), False
        if not target.addresses:  # nothing was checked, so there is nowhere to connect
            error = f"no checked address to connect to: {target.unresolved}"
            return FetchResult("failed_to_download", error=error, final_url=current), True
        response = _get_pinned(target, policy, session, started)
        if isinstance(response, _Failure):
            return response.result, response.transient
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
