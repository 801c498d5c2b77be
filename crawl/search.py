"""Engines ``bing``, ``google``, ``baidu``, ``flickr``: candidate URLs from web image search.

icrawler supplies the search knowledge only: its *feeder* classes build the result-page URLs for a query
and its *parser* classes read image URLs out of a result page. Result pages are fetched by our safe
fetcher (the injected :data:`~crawl.base.PageFetcher`) and the images are downloaded by the crawl itself,
so the safety rules and the manifest apply to everything. icrawler's own downloader is never used.

Bing's result pages are read by :func:`parse_bing_page` instead of icrawler's parser, which keeps
``.jpg`` links only (and cuts a link at its first ``.jpg``).
"""

from __future__ import annotations

import json
import logging
import queue
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import PurePosixPath
from types import SimpleNamespace
from typing import Any
from urllib.parse import quote_plus, urlsplit

from crawl.base import Candidate, PageFetcher
from crawl.fetch import PageFetchError
from crawl.identities import Identity

__all__ = [
    "SearchSpec",
    "SEARCH_SPECS",
    "SearchEngine",
    "FLICKR_SIZE_PREFERENCE",
    "BING_EXTENSIONS",
    "parse_bing_page",
]

log = logging.getLogger(__name__)

# Bing, Google and Baidu serve at most the first 1000 results of a query.
MAX_RESULTS = 1000
# Flickr size labels (lower case, as its getSizes API names them), largest first; we want big faces.
FLICKR_SIZE_PREFERENCE = (
    "original",
    "large 2048",
    "large 1600",
    "large",
    "medium 800",
    "medium 640",
    "medium",
)
# Media links of a Bing result page worth downloading, by the extension of their path (any case).
BING_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".webp"})


def _bing_media_url(meta: str) -> str | None:
    """The ``murl`` (full-size image link) of a tile's ``m`` attribute, a JSON object; None if absent."""
    try:
        info = json.loads(meta)
    except ValueError:
        return None
    url = info.get("murl") if isinstance(info, dict) else None
    return url if isinstance(url, str) and url else None


def parse_bing_page(content: bytes) -> list[str]:
    """Image links of a Bing result page, in page order: the ``murl`` of each result tile.

    A tile is a ``div.imgpt`` whose first link carries the ``m`` attribute (related-search tiles have
    none). Links are kept whole, query string included, when their path ends in one of
    :data:`BING_EXTENSIONS`; other formats (GIF, SVG, ...) and links without an extension are dropped.
    """
    from bs4 import BeautifulSoup  # icrawler's dependency, imported with it only where needed

    soup = BeautifulSoup(content.decode("utf-8", "ignore"), "html.parser")
    urls: list[str] = []
    for div in soup.find_all("div", class_="imgpt"):
        link = div.find("a")
        meta = link.get("m") if link is not None else None
        url = _bing_media_url(meta) if isinstance(meta, str) else None
        if url is not None and PurePosixPath(urlsplit(url).path).suffix.lower() in BING_EXTENSIONS:
            urls.append(url)
    return urls


class _PageSession:
    """Stand-in for the ``requests`` session icrawler parsers call (Flickr asks for photo sizes).

    Routes every request through our page fetcher, so it obeys the same safety rules.
    """

    def __init__(self, fetch_page: PageFetcher) -> None:
        self._fetch_page = fetch_page

    def get(self, url: str, **_: Any) -> SimpleNamespace:
        return SimpleNamespace(content=self._fetch_page(url), url=url, status_code=200)


@dataclass(frozen=True)
class SearchSpec:
    """How to drive one icrawler search engine.

    ``feed_kwargs(query, max_num, filters, apikey)`` gives the keyword arguments of the feeder's ``feed``;
    ``parse_kwargs(apikey)`` those of the parser's ``parse``; ``uses_filter`` says whether the feeder has
    icrawler's filter table (Flickr passes search parameters straight to its API instead);
    ``page_parser``, when set, reads result pages instead of icrawler's parser.
    """

    module: str
    feeder: str
    parser: str
    feed_kwargs: Callable[[str, int, Mapping[str, str], str | None], dict[str, Any]]
    parse_kwargs: Callable[[str | None], dict[str, Any]]
    uses_filter: bool = True
    needs_apikey: bool = False
    page_parser: Callable[[bytes], list[str]] | None = None


def _filters(filters: Mapping[str, str]) -> dict[str, str] | None:
    return dict(filters) if filters else None


SEARCH_SPECS: dict[str, SearchSpec] = {
    # Bing and Baidu put the keyword into the URL unescaped: quote it here.
    "bing": SearchSpec(
        "icrawler.builtin.bing",
        "BingFeeder",
        "BingParser",
        lambda q, n, f, _k: dict(
            keyword=quote_plus(q), offset=0, max_num=min(n, MAX_RESULTS), filters=_filters(f)
        ),
        lambda _k: {},
        page_parser=parse_bing_page,
    ),
    "google": SearchSpec(
        "icrawler.builtin.google",
        "GoogleFeeder",
        "GoogleParser",
        lambda q, n, f, _k: dict(keyword=q, offset=0, max_num=min(n, MAX_RESULTS), filters=_filters(f)),
        lambda _k: {},
    ),
    "baidu": SearchSpec(
        "icrawler.builtin.baidu",
        "BaiduFeeder",
        "BaiduParser",
        lambda q, n, f, _k: dict(
            keyword=quote_plus(q), offset=0, max_num=min(n, MAX_RESULTS), filters=_filters(f)
        ),
        lambda _k: {},
    ),
    "flickr": SearchSpec(
        "icrawler.builtin.flickr",
        "FlickrFeeder",
        "FlickrParser",
        lambda q, n, f, k: dict(apikey=k, max_num=n, text=q, sort="relevance", **f),
        lambda k: dict(apikey=k, size_preference=list(FLICKR_SIZE_PREFERENCE)),
        uses_filter=False,
        needs_apikey=True,
    ),
}


def _icrawler_classes(spec: SearchSpec) -> tuple[type, type]:
    import importlib

    module = importlib.import_module(spec.module)
    return getattr(module, spec.feeder), getattr(module, spec.parser)


class SearchEngine:
    """A web image search through icrawler's feeder and parser classes.

    Result pages are fetched lazily: the next page is requested only when the crawl asks for more
    candidates. The first page that cannot be fetched ends the identity's listing (later pages of a
    blocked search fail the same way); :attr:`page_errors` counts such failures.
    """

    def __init__(
        self,
        name: str,
        fetch_page: PageFetcher,
        *,
        max_candidates: int,
        filters: Mapping[str, str] | None = None,
        apikey: str | None = None,
    ) -> None:
        if name not in SEARCH_SPECS:
            raise ValueError(f"unknown search engine {name!r}; allowed: {', '.join(sorted(SEARCH_SPECS))}")
        self.name = name
        self._spec = SEARCH_SPECS[name]
        if self._spec.needs_apikey and not apikey:
            raise ValueError(f"engine {name!r} needs an API key")
        self._fetch_page = fetch_page
        self._max_candidates = max_candidates
        self._filters = dict(filters or {})
        self._apikey = apikey
        self._feeder_cls, self._parser_cls = _icrawler_classes(self._spec)
        self.page_errors = 0
        if self._spec.uses_filter and self._filters:
            self._check_filters()

    def _signal(self) -> Any:
        from icrawler.utils import Signal

        return Signal()

    def _check_filters(self) -> None:
        feeder = self._feeder_cls(1, self._signal(), None)
        try:
            feeder.get_filter().apply(self._filters)
        except (KeyError, TypeError, ValueError, AssertionError) as exc:
            msg = exc.args[0] if exc.args else exc
            raise ValueError(f"bad search_filters for engine {self.name!r}: {msg}") from exc

    def page_urls(self, query: str) -> list[str]:
        """The result-page URLs icrawler's feeder builds for ``query``, in order."""
        feeder = self._feeder_cls(1, self._signal(), None)
        feeder.out_queue = queue.Queue()  # unbounded: the feeder puts every page URL before we read one
        feeder.feed(**self._spec.feed_kwargs(query, self._max_candidates, self._filters, self._apikey))
        urls: list[str] = []
        while True:
            try:
                urls.append(feeder.out_queue.get_nowait())
            except queue.Empty:
                return urls

    def parse_page(self, content: bytes) -> list[str]:
        """Image URLs read from one result page (``content``: the page bytes), by the spec's parser."""
        if self._spec.page_parser is not None:
            return self._spec.page_parser(content)
        parser = self._parser_cls(1, self._signal(), _PageSession(self._fetch_page))
        tasks = parser.parse(SimpleNamespace(content=content), **self._spec.parse_kwargs(self._apikey)) or []
        return [task["file_url"] for task in tasks if isinstance(task, dict) and task.get("file_url")]

    def candidates(self, identity: Identity) -> Iterator[Candidate]:
        for page_url in self.page_urls(identity.query):
            try:
                content = self._fetch_page(page_url)
            except PageFetchError as exc:
                self.page_errors += 1
                log.warning(
                    "%s: result page failed for %s, stopping its listing: %s", self.name, identity.slug, exc
                )
                return
            urls = self.parse_page(content)
            if not urls:
                return  # past the last result page
            for url in urls:
                yield Candidate(url=url, query=identity.query)
