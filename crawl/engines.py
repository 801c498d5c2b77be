"""The engine registry: ``{name: builder}``, filled explicitly, plus identity resolution per engine."""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from crawl.base import Engine, PageFetcher
from crawl.identities import Identity, parse_identity_list
from crawl.local import LocalFolderEngine, list_local_identities
from crawl.search import SearchEngine
from crawl.urllist import UrlListEngine, parse_url_list, url_list_identities

if TYPE_CHECKING:
    from crawl.config import CrawlConfig

__all__ = ["ENGINES", "EngineBuilder", "register_engine", "build_engine", "resolve_identities"]

# builder(config, identities to crawl, page fetcher) -> Engine
EngineBuilder = Callable[["CrawlConfig", Sequence[Identity], PageFetcher], Engine]


def _search_builder(name: str) -> EngineBuilder:
    def build(config: CrawlConfig, identities: Sequence[Identity], fetch_page: PageFetcher) -> Engine:
        apikey = None
        if name == "flickr":
            apikey = os.environ.get(config.flickr_apikey_env)
            if not apikey:
                raise ValueError(
                    "engine 'flickr' needs a Flickr API key in the environment variable "
                    f"{config.flickr_apikey_env}"
                )
        return SearchEngine(
            name,
            fetch_page,
            max_candidates=config.max_candidates,
            filters=config.search_filters,
            apikey=apikey,
        )

    return build


def _build_urls(config: CrawlConfig, identities: Sequence[Identity], fetch_page: PageFetcher) -> Engine:
    assert config.url_list is not None  # enforced by CrawlConfig
    return UrlListEngine(parse_url_list(config.url_list), identities)


def _build_local(config: CrawlConfig, identities: Sequence[Identity], fetch_page: PageFetcher) -> Engine:
    assert config.local_root is not None  # enforced by CrawlConfig
    return LocalFolderEngine(
        config.local_root,
        identities,
        distractor_dir=config.distractor_dir,
        distractors_per_identity=config.distractors_per_identity,
    )


ENGINES: dict[str, EngineBuilder] = {}


def register_engine(name: str, builder: EngineBuilder) -> None:
    """Add an engine; a name already taken raises ValueError."""
    if name in ENGINES:
        raise ValueError(f"engine {name!r} is already registered")
    ENGINES[name] = builder


for _name in ("bing", "google", "baidu", "flickr"):
    register_engine(_name, _search_builder(_name))
register_engine("urls", _build_urls)
register_engine("local", _build_local)


def build_engine(
    name: str, config: CrawlConfig, identities: Sequence[Identity], fetch_page: PageFetcher
) -> Engine:
    """Build the engine ``name``; an unknown name raises ValueError naming the allowed ones."""
    if name not in ENGINES:
        raise ValueError(f"unknown engine {name!r}; allowed: {', '.join(sorted(ENGINES))}")
    return ENGINES[name](config, identities, fetch_page)


def resolve_identities(config: CrawlConfig) -> list[Identity]:
    """Who to crawl: the identity list when given, else what the engine's input names.

    ``local`` lists its sub-folders (sorted by slug), ``urls`` the identities of its URL list (file order).
    """
    if config.identities_file is not None:
        return parse_identity_list(config.identities_file)
    if config.engine == "local" and config.local_root is not None:
        return list_local_identities(config.local_root)
    if config.engine == "urls" and config.url_list is not None:
        return url_list_identities(parse_url_list(config.url_list))
    raise ValueError(f"engine {config.engine!r} needs identities_file")
