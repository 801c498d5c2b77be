"""The ``curate`` stage: raw crawled photos → aligned, identity-consistent, split CelebRef-HQ dataset.

Order (paper §4.1): decode → faces ≥ ``min_face`` → sharpness → identity consistency → align 512 and
re-detect landmarks → near-duplicates → per-identity sharpness quota and cap → identities with
≥ ``min_images`` → identity-disjoint split. Every dropped photo gets a row in ``rejected.parquet``.

The per-photo work (face analysis, alignment) is cached under ``<out>/analysis/``: ``faces-<key>/`` holds
each raw photo's analysis by sha256, ``aligned-<key>/`` each chosen face's alignment and aligned image,
``<key>`` hashing the settings that shape the result. A run killed at any moment and started again redoes
only the photos that were in flight; changing a threshold that the analysis does not depend on (identity,
duplicates, quota, split) reuses all of it. The final dataset is written atomically beside the cache.
"""

from __future__ import annotations

import logging
import shutil
from collections import Counter, defaultdict
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from tqdm import tqdm

from celebref.atomic import atomic_dir
from celebref.config import dump_config
from curate.analyze import AlignedPhoto, PhotoAnalysis, aligned_from_record, analysis_from_record
from curate.cache import Record, ResultStore, link_tree, settings_key
from curate.card import write_dataset_card
from curate.config import CurateConfig
from curate.dataset import SPLITS
from curate.execute import Backend, align_job, aligned_files, analyse_job, check_backend, run_jobs
from curate.identity import curate_identities
from curate.quality import hamming_distance
from curate.split import split_identities

__all__ = ["run", "read_raw_photos", "analysis_cache", "AnalysisCache", "REJECTION_REASONS", "CACHE_DIR"]

log = logging.getLogger(__name__)

REJECTION_REASONS = (
    "decode_error",
    "no_face",
    "face_too_small",
    "blurry",
    "several_faces",
    "identity_outlier",
    "duplicate",
    "over_cap",
    "too_few_images",
)

CACHE_DIR = "analysis"
# Part of every cache key: bump when the analysis code changes its results for the same settings.
ANALYSIS_VERSION = 2


@dataclass(frozen=True)
class AnalysisCache:
    """The two stores of per-photo results under ``<out>/analysis``."""

    faces: ResultStore
    aligned: ResultStore

    def stores(self) -> tuple[ResultStore, ResultStore]:
        return self.faces, self.aligned


def analysis_cache(out_dir: Path, config: CurateConfig) -> AnalysisCache:
    """The cache folders for ``config``: keyed by everything that changes the analysis or the alignment."""
    models = config.faces.model_dump(mode="json", exclude={"weights_dir", "allow_download", "device"})
    faces = {
        "version": ANALYSIS_VERSION,
        "faces": models,
        "min_face": config.min_face,
        "min_sharpness": config.min_sharpness,
        "sharpness_size": config.sharpness_size,
    }
    aligned = {"analysis": faces, "size": config.size}
    root = out_dir / CACHE_DIR
    return AnalysisCache(
        faces=ResultStore(root / f"faces-{settings_key(faces)}"),
        aligned=ResultStore(root / f"aligned-{settings_key(aligned)}"),
    )


@dataclass
class Photo:
    """A raw photo moving through the stage; ``reason`` is set once it is dropped."""

    identity: str
    name: str
    sha256: str
    path: Path
    url: str
    analysis: PhotoAnalysis | None = None
    face: int | None = None
    distance: float = float("nan")
    aligned: AlignedPhoto | None = None
    aligned_key: str = ""
    reason: str | None = None
    detail: str = ""

    def drop(self, reason: str, detail: str = "") -> None:
        self.reason, self.detail = reason, detail

    @property
    def sharpness(self) -> float:
        assert self.analysis is not None and self.face is not None
        return self.analysis.candidates[self.face].sharpness


def read_raw_photos(raw_dir: Path) -> list[Photo]:
    """The successfully downloaded photos of ``raw_dir/manifest.parquet``, in a stable order."""
    manifest_path = raw_dir / "manifest.parquet"
    if not manifest_path.is_file():
        raise FileNotFoundError(f"raw manifest not found: {manifest_path} (run the crawl stage first)")
    rows = pd.read_parquet(manifest_path)
    rows = rows[rows["status"] == "ok"].sort_values(["identity", "sha256"])
    photos = []
    for row in rows.itertuples(index=False):
        path = raw_dir / str(row.path)
        photos.append(Photo(row.identity, str(row.name), row.sha256, path, str(row.url)))
    return photos


def _choose_faces(photos: list[Photo], threshold: float) -> None:
    by_identity: dict[str, list[Photo]] = defaultdict(list)
    for p in photos:
        if p.reason is None:
            by_identity[p.identity].append(p)
    candidates = {
        ident: [np.stack([c.embedding for c in p.analysis.candidates]) for p in group]  # type: ignore[union-attr]
        for ident, group in by_identity.items()
    }
    choices = curate_identities(candidates, threshold)
    for ident, group in by_identity.items():
        for photo, choice in zip(group, choices[ident], strict=True):
            photo.distance = choice.distance
            if choice.kept:
                photo.face = choice.face
            else:
                photo.drop(choice.reason or "identity_outlier", choice.detail)


def _drop_duplicates(group: list[Photo], max_hamming: int) -> None:
    """Within one identity keep the sharpest of each set of near-identical aligned faces."""
    kept: list[Photo] = []
    for photo in sorted(group, key=lambda p: (-p.sharpness, p.sha256)):
        assert photo.aligned is not None
        twin = next(
            (k for k in kept if hamming_distance(k.aligned.dhash, photo.aligned.dhash) <= max_hamming),  # type: ignore[union-attr]
            None,
        )
        if twin is None:
            kept.append(photo)
        else:
            photo.drop("duplicate", f"near-duplicate of {twin.sha256[:16]} (kept, sharper)")


def _apply_quota(group: list[Photo], config: CurateConfig) -> None:
    ranked = sorted(group, key=lambda p: (-p.sharpness, p.sha256))
    n_keep = max(1, int(np.ceil(config.sharpness_keep_fraction * len(ranked))))
    for p in ranked[n_keep:]:
        p.drop("blurry", f"below the identity's top {config.sharpness_keep_fraction:.0%} by sharpness")
    survivors = ranked[:n_keep]
    if config.max_images is not None:
        for p in survivors[config.max_images :]:
            p.drop("over_cap", f"identity already has {config.max_images} sharper images")


def _live(photos: list[Photo]) -> list[Photo]:
    return [p for p in photos if p.reason is None]


def _backend(config: CurateConfig) -> Backend:
    return Backend(config.backend, config.workers, config.ray_address)


def _complete(
    store: ResultStore,
    jobs: dict[str, tuple],
    fn: object,
    config: CurateConfig,
    what: str,
    **kwargs: object,
) -> dict[str, Record]:
    """The record of every job in ``jobs`` (``key → args``): cached ones read, the others computed."""
    contents = store.load()
    todo = [(key, *args) for key, args in jobs.items() if key not in contents.records]
    redo = len(contents.in_flight & set(jobs))
    print(
        f"curate: {what}: {len(jobs) - len(todo)} of {len(jobs)} cached, "
        f"{redo} in flight when a run stopped, computing {len(todo)}"
    )
    done = run_jobs(fn, todo, config.faces, _backend(config), store=store.root, **kwargs)  # type: ignore[arg-type]
    for _ in tqdm(done, total=len(todo), desc=what):
        pass
    records = store.compact()
    return {key: records[key] for key in jobs}


def curate_photos(photos: list[Photo], config: CurateConfig, cache: AnalysisCache) -> None:
    """Run every selection step, setting ``reason`` on dropped photos (in place)."""
    jobs = {p.sha256: (str(p.path),) for p in photos}  # a photo crawled for two identities: analysed once
    analyses = _complete(
        cache.faces,
        jobs,
        analyse_job,
        config,
        "analyse faces",
        min_face=config.min_face,
        min_sharpness=config.min_sharpness,
        sharpness_size=config.sharpness_size,
    )
    for photo in photos:
        photo.analysis = analysis_from_record(analyses[photo.sha256])
        if photo.analysis.reason is not None:
            photo.drop(photo.analysis.reason, photo.analysis.detail)
    _choose_faces(photos, config.identity_threshold)

    live = _live(photos)
    align_jobs: dict[str, tuple] = {}
    for p in live:
        p.aligned_key = f"{p.sha256}-{p.face}"
        landmarks = p.analysis.candidates[p.face].landmarks  # type: ignore[union-attr,index]
        align_jobs[p.aligned_key] = (str(p.path), [float(v) for v in landmarks.reshape(-1)])
    aligned = _complete(cache.aligned, align_jobs, align_job, config, "align", size=config.size)
    for photo in live:
        photo.aligned = aligned_from_record(aligned[photo.aligned_key])
        if photo.aligned.reason is not None:
            photo.drop(photo.aligned.reason, photo.aligned.detail)

    groups: dict[str, list[Photo]] = defaultdict(list)
    for p in _live(photos):
        groups[p.identity].append(p)
    for group in groups.values():
        _drop_duplicates(group, config.duplicate_hamming)
        _apply_quota(_live(group), config)
    for ident, group in groups.items():
        remaining = _live(group)
        if len(remaining) < config.min_images:
            for p in remaining:
                p.drop(
                    "too_few_images",
                    f"identity '{ident}' keeps {len(remaining)} < min_images {config.min_images}",
                )


def _manifest_rows(photos: list[Photo], assignment: dict[str, str], config: CurateConfig) -> list[dict]:
    rows = []
    by_identity: dict[str, list[Photo]] = defaultdict(list)
    for p in _live(photos):
        by_identity[p.identity].append(p)
    for ident in sorted(by_identity):
        for n, p in enumerate(sorted(by_identity[ident], key=lambda q: q.sha256)):
            cand = p.analysis.candidates[p.face]  # type: ignore[union-attr,index]
            aligned = p.aligned
            assert aligned is not None and aligned.matrix is not None
            rows.append(
                {
                    "identity": ident,
                    "name": p.name,
                    "split": assignment[ident],
                    "index": n,
                    "path": f"{assignment[ident]}/{ident}/{n}.png",
                    "source_sha256": p.sha256,
                    "source_path": str(p.path),
                    "source_url": p.url,
                    "source_width": p.analysis.width,  # type: ignore[union-attr]
                    "source_height": p.analysis.height,  # type: ignore[union-attr]
                    "faces_in_photo": p.analysis.n_faces,  # type: ignore[union-attr]
                    "face_size": cand.face_size,
                    "sharpness": cand.sharpness,
                    "identity_distance": p.distance,
                    "embedder": config.faces.embedder,
                    "landmark_detector": aligned.landmark_source,
                    "alignment_matrix": aligned.matrix.reshape(-1).tolist(),
                }
            )
    return rows


def _rejected_rows(photos: list[Photo]) -> list[dict]:
    return [
        {
            "identity": p.identity,
            "name": p.name,
            "source_sha256": p.sha256,
            "source_path": str(p.path),
            "source_url": p.url,
            "reason": p.reason,
            "detail": p.detail,
        }
        for p in photos
        if p.reason is not None
    ]


def run(config: CurateConfig, raw_dir: Path, out_dir: Path) -> pd.DataFrame:
    """Build the dataset under ``out_dir`` (replaced atomically, its analysis cache carried over).

    Returns the manifest.
    """
    check_backend(_backend(config))
    photos = read_raw_photos(raw_dir)
    if not photos:
        raise ValueError(f"{raw_dir}: the raw manifest lists no successfully downloaded photo")
    cache = analysis_cache(out_dir, config)
    curate_photos(photos, config, cache)
    kept_identities = sorted({p.identity for p in _live(photos)})
    assignment = split_identities(kept_identities, config.split, config.seed) if kept_identities else {}
    manifest = pd.DataFrame(_manifest_rows(photos, assignment, config))
    rejected = pd.DataFrame(
        _rejected_rows(photos),
        columns=["identity", "name", "source_sha256", "source_path", "source_url", "reason", "detail"],
    )
    by_source = {(p.identity, p.sha256): p for p in photos}
    for stale in out_dir.parent.glob(f".{out_dir.name}.*.tmp"):  # left by a run killed while writing
        shutil.rmtree(stale, ignore_errors=True)
    with atomic_dir(out_dir) as tmp:
        for split in SPLITS:  # every split folder, even an empty one: each is a DVC out of its own
            (tmp / split).mkdir()
        for row in manifest.itertuples(index=False):
            key = by_source[(row.identity, row.source_sha256)].aligned_key
            image, landmarks = aligned_files(cache.aligned.root, key)
            link_tree(image, tmp / row.path)
            link_tree(landmarks, (tmp / row.path).with_suffix(".landmarks.txt"))
        manifest.to_parquet(tmp / "manifest.parquet", index=False)
        rejected.to_parquet(tmp / "rejected.parquet", index=False)
        dump_config(config, tmp / "config.yaml")
        write_dataset_card(tmp / "README.md", manifest, rejected, config)
        for store in cache.stores():  # the current settings' cache lives on; older settings' is dropped
            link_tree(store.root, tmp / CACHE_DIR / store.root.name)
    tally = Counter(rejected["reason"])
    print(
        f"curate: {len(photos)} photos → {len(manifest)} images of {len(kept_identities)} identities "
        f"({', '.join(f'{s} {sum(v == s for v in assignment.values())}' for s in config.split)} identities); "
        f"rejected {len(rejected)}: {dict(sorted(tally.items()))}"
    )
    return manifest
