"""The crawl stage: identities → candidates → parallel downloads → ``<out>/<identity>/<sha256[:16]>.<ext>``.

Resumable: the existing manifest says which URLs each identity already tried and which bytes are stored.
An identity with ``max_images`` stored images or ``max_candidates`` tried URLs is skipped whole; other
identities list their candidates again and skip every URL already tried (with ``retry_failed``, URLs whose
last attempt failed to download are tried again). Local files are recorded by their path relative to
``out`` (see :mod:`crawl.manifest`), so a moved crawl folder resumes where it stopped.

Each distinct content is stored once. Bytes this identity already has become a ``duplicate`` row naming the
stored file. Bytes stored for another identity belong to this one too (the same photo found under two
names): an ``ok`` row whose ``path`` is the file already stored, in the other identity's folder, and whose
``duplicate_of`` names it as well, so the sharing shows; no second copy is written, and the row counts
towards this identity's ``max_images``. Every raw file and the manifest are written atomically; raw files
are never rewritten.
"""

from __future__ import annotations

import logging
from collections import Counter, deque
from collections.abc import Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path

import pandas as pd
from tqdm import tqdm

from celebref.atomic import atomic_write_bytes
from celebref.config import dump_config
from crawl.base import Candidate, Engine, PageFetcher
from crawl.config import CrawlConfig
from crawl.download import Attempt, attempt_candidate
from crawl.engines import build_engine, resolve_identities
from crawl.fetch import FetchPolicy, PageFetchError, fetch_url
from crawl.identities import Identity
from crawl.manifest import (
    MANIFEST_NAME,
    STATUSES,
    ManifestRow,
    local_path,
    local_url,
    read_manifest,
    rows_to_frame,
    write_manifest,
)
from crawl.safety import Resolver, UrlPolicy, system_resolver

__all__ = [
    "run",
    "prepare",
    "CrawlPlan",
    "CrawlSummary",
    "fetch_policy",
    "page_fetcher",
    "ResumeState",
    "CONFIG_NAME",
]

log = logging.getLogger(__name__)

CONFIG_NAME = "crawl_config.yaml"
FLUSH_ROWS = 100  # write the manifest at least this often (rows), besides after every identity


def fetch_policy(config: CrawlConfig, resolver: Resolver = system_resolver) -> FetchPolicy:
    """The fetch limits a config asks for; host names are looked up with ``resolver``."""
    url_policy = UrlPolicy.from_strings(
        allow_private_hosts=config.allow_private_hosts,
        allowed_networks=config.allowed_networks,
        resolver=resolver,
    )
    return FetchPolicy(
        url_policy=url_policy,
        timeout_s=config.timeout_s,
        max_seconds=config.max_seconds_per_file,
        retries=config.retries,
        backoff_s=config.backoff_s,
        max_bytes=config.max_bytes,
        max_redirects=config.max_redirects,
        user_agent=config.user_agent,
    )


def page_fetcher(policy: FetchPolicy) -> PageFetcher:
    """Result-page fetching under the same safety rules; raises PageFetchError on failure."""

    def fetch_page(url: str) -> bytes:
        result = fetch_url(url, policy)
        if result.status != "ok" or result.data is None:
            raise PageFetchError(url, result)
        return result.data

    return fetch_page


def _recorded_url(url: str, root: Path | None) -> str:
    """``url`` as this run records it: an older absolute ``file://`` URI becomes relative to ``root``."""
    if root is None or not url.startswith("file://"):
        return url
    path = local_path(url, root)
    return url if path is None else local_url(path, root)


@dataclass
class ResumeState:
    """What an existing manifest tells a new run.

    ``stored`` maps each content to its one file, in the folder of the identity that stored it first; an
    identity in ``owned`` may hold content whose file lies in another identity's folder.
    """

    stored: dict[str, str] = field(default_factory=dict)  # sha256 → stored path (relative)
    owned: dict[str, set[str]] = field(default_factory=dict)  # identity → sha256 of its ok rows
    done_urls: dict[str, set[str]] = field(default_factory=dict)  # identity → URLs not to try again
    ok_counts: Counter[str] = field(default_factory=Counter)  # identity → stored images
    listing_errors: int = 0  # candidate listings that raised (this run)

    @classmethod
    def from_manifest(
        cls, frame: pd.DataFrame, *, retry_failed: bool, root: Path | None = None
    ) -> ResumeState:
        """Read ``frame``; with ``root`` (the manifest's folder), older absolute local URLs count as tried."""
        state = cls()
        for row in frame.itertuples(index=False):
            if row.status == "ok":
                state.stored.setdefault(str(row.sha256), str(row.path))
                state.owned.setdefault(row.identity, set()).add(str(row.sha256))
                state.ok_counts[row.identity] += 1
            urls = state.done_urls.setdefault(row.identity, set())
            url = _recorded_url(str(row.url), root)
            if retry_failed and row.status == "failed_to_download":
                urls.discard(url)
            else:
                urls.add(url)
        return state


@dataclass
class CrawlSummary:
    """Counts of one run: new manifest rows by status, identities, failed result pages, and ``stored``:
    the photos the manifest holds after the run (``ok`` rows of every run, this one included)."""

    identities: int = 0
    skipped_identities: int = 0
    by_status: Counter[str] = field(default_factory=Counter)
    page_errors: int = 0
    stored: int = 0

    def line(self) -> str:
        counts = " ".join(f"{s}={self.by_status[s]}" for s in STATUSES if self.by_status[s])
        return (
            f"crawl: {self.identities} identities ({self.skipped_identities} already done), "
            f"{sum(self.by_status.values())} new attempts: {counts or 'none'}; "
            f"{self.page_errors} result pages failed; {self.stored} photos stored in all"
        )

    def nothing_stored(self) -> str | None:
        """Why the crawl holds no photo at all (None when it holds some): a run that produced nothing."""
        if self.stored:
            return None
        tried = sum(self.by_status.values())
        causes = []
        if self.page_errors:
            causes.append(f"{self.page_errors} result pages failed")
        if tried:
            causes.append(f"none of {tried} download attempts stored a photo")
        elif not self.page_errors:
            causes.append("no candidate found")
        return f"crawl: no photo downloaded for {self.identities} identities ({'; '.join(causes)})"


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z")


class _Store:
    """Writes ok images (content-addressed, atomically, once) and turns attempts into manifest rows."""

    def __init__(self, out_dir: Path, state: ResumeState, engine: str) -> None:
        self.out_dir = out_dir
        self.stored = state.stored
        self.owned = state.owned
        self.engine = engine

    def _write_once(self, path: str, data: bytes | None) -> None:
        target = self.out_dir / path
        # already there when left by a crash before the manifest was written, or stored for another identity
        if not target.exists():
            assert data is not None
            atomic_write_bytes(target, data)

    def record(self, identity: Identity, attempt: Attempt) -> ManifestRow:
        status, error, path, duplicate_of = attempt.status, attempt.error, None, None
        if status == "ok" and attempt.sha256 is not None:
            mine = self.owned.setdefault(identity.slug, set())
            stored = self.stored.get(attempt.sha256)
            if attempt.sha256 in mine:
                status, duplicate_of = "duplicate", stored
                error = f"same bytes as {duplicate_of}"
            elif stored is not None:  # another identity's photo: shared, not copied
                path = duplicate_of = stored
                self._write_once(path, attempt.data)
                mine.add(attempt.sha256)
            else:
                path = f"{identity.slug}/{attempt.sha256[:16]}.{attempt.ext}"
                self._write_once(path, attempt.data)
                self.stored[attempt.sha256] = path
                mine.add(attempt.sha256)
        return ManifestRow(
            identity=identity.slug,
            name=identity.name,
            query=attempt.candidate.query,
            engine=self.engine,
            url=attempt.candidate.url,
            sha256=attempt.sha256,
            bytes=attempt.nbytes,
            width=attempt.width,
            height=attempt.height,
            status=status,
            error=error,
            fetched_at=_now(),
            path=path,
            duplicate_of=duplicate_of,
        )


def _crawl_identity(
    identity: Identity,
    engine: Engine,
    config: CrawlConfig,
    policy: FetchPolicy,
    state: ResumeState,
    store: _Store,
    pool: ThreadPoolExecutor,
) -> Iterator[list[ManifestRow]]:
    """Yield batches of manifest rows for one identity.

    Downloads run in parallel but are recorded in candidate order, so which copy of repeated bytes is
    stored (the first) does not depend on timing. At most ``workers`` candidates are pending at once, and
    never more than could still be needed: stored images plus pending ones stay within ``max_images``,
    tried URLs plus pending ones within ``max_candidates``.
    """
    done = state.done_urls.setdefault(identity.slug, set())
    root = store.out_dir
    ok = state.ok_counts[identity.slug]
    tried = len(done)
    candidates = engine.candidates(identity)
    pending: deque[Future[Attempt]] = deque()  # submission order
    batch: list[ManifestRow] = []
    exhausted = False
    while True:
        while (
            not exhausted
            and len(pending) < config.workers
            and ok + len(pending) < config.max_images
            and tried + len(pending) < config.max_candidates
        ):
            try:
                candidate: Candidate | None = next(candidates, None)
            except Exception as exc:  # a search engine's page parser choking on an odd page
                log.warning("%s: listing candidates for %s failed: %s", engine.name, identity.slug, exc)
                state.listing_errors += 1
                candidate = None
            if candidate is None:
                exhausted = True
                break
            if candidate.local_path is not None:  # recorded relative to the crawl folder
                candidate = replace(candidate, url=local_url(candidate.local_path, root))
            if candidate.url in done:
                continue
            done.add(candidate.url)
            pending.append(
                pool.submit(
                    attempt_candidate,
                    candidate,
                    policy,
                    min_side=config.min_side,
                    max_pixels=config.max_pixels,
                )
            )
        if not pending:
            break
        wait([pending[0]], return_when=FIRST_COMPLETED)
        while pending and pending[0].done():
            row = store.record(identity, pending.popleft().result())
            tried += 1
            ok += row.status == "ok"
            batch.append(row)
        if len(batch) >= FLUSH_ROWS:
            yield batch
            batch = []
    state.ok_counts[identity.slug] = ok
    if batch:
        yield batch


def _is_done(identity: Identity, config: CrawlConfig, state: ResumeState) -> bool:
    return (
        state.ok_counts[identity.slug] >= config.max_images
        or len(state.done_urls.get(identity.slug, ())) >= config.max_candidates
    )


@dataclass
class CrawlPlan:
    """What a run needs before it writes anything: who to crawl, the engine, the fetch limits."""

    identities: list[Identity]
    engine: Engine
    policy: FetchPolicy


def prepare(
    config: CrawlConfig,
    *,
    identities: Sequence[Identity] | None = None,
    page_fetch: PageFetcher | None = None,
    resolver: Resolver = system_resolver,
) -> CrawlPlan:
    """Read the inputs and build the engine, writing nothing (see :func:`run` for the arguments).

    Raises :class:`FileNotFoundError` or :class:`ValueError` for a bad input or setting: an identity list or
    URL list that cannot be read, a missing local folder, bad search filters, Flickr without its API key.
    """
    policy = fetch_policy(config, resolver)
    identities = list(identities) if identities is not None else resolve_identities(config)
    engine = build_engine(config.engine, config, identities, page_fetch or page_fetcher(policy))
    return CrawlPlan(identities=identities, engine=engine, policy=policy)


def run(
    config: CrawlConfig,
    out_dir: str | Path,
    *,
    identities: Sequence[Identity] | None = None,
    page_fetch: PageFetcher | None = None,
    progress: bool = True,
    resolver: Resolver = system_resolver,
    plan: CrawlPlan | None = None,
) -> CrawlSummary:
    """Crawl every identity into ``out_dir`` and update ``out_dir/manifest.parquet``.

    ``identities`` defaults to :func:`crawl.engines.resolve_identities`; ``page_fetch`` (result pages of
    search engines) defaults to the safe fetcher; ``resolver`` looks up host names for the safety check,
    whose answer is also where the connection goes; ``plan``, from :func:`prepare`, replaces those three.
    Inputs and settings are checked (:func:`prepare`) before anything is written; then the resolved
    config goes to ``out_dir/crawl_config.yaml``.
    """
    if plan is None:
        plan = prepare(config, identities=identities, page_fetch=page_fetch, resolver=resolver)
    policy, identities, engine = plan.policy, plan.identities, plan.engine
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    dump_config(config, out_dir / CONFIG_NAME)

    manifest_path = out_dir / MANIFEST_NAME
    manifest = read_manifest(manifest_path)
    state = ResumeState.from_manifest(manifest, retry_failed=config.retry_failed, root=out_dir)
    store = _Store(out_dir, state, config.engine)
    summary = CrawlSummary(identities=len(identities))

    bar = tqdm(identities, desc="crawl", unit="identity", disable=not progress)
    with ThreadPoolExecutor(max_workers=config.workers, thread_name_prefix="crawl") as pool:
        for identity in bar:
            if _is_done(identity, config, state):
                summary.skipped_identities += 1
                continue
            for batch in _crawl_identity(identity, engine, config, policy, state, store, pool):
                summary.by_status.update(row.status for row in batch)
                new = rows_to_frame(batch)
                manifest = new if manifest.empty else pd.concat([manifest, new], ignore_index=True)
                write_manifest(manifest_path, manifest)
            bar.set_postfix(new_ok=summary.by_status["ok"], new_rows=sum(summary.by_status.values()))
    summary.page_errors = engine.page_errors + state.listing_errors
    summary.stored = 0 if manifest.empty else int((manifest["status"] == "ok").sum())
    if not manifest_path.exists():
        write_manifest(manifest_path, manifest)
    log.info(summary.line())
    return summary
