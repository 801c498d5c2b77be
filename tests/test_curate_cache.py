"""The analysis cache's store: journals, torn lines, in-flight keys, shards, exact records."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from curate.analyze import (
    AlignedPhoto,
    Candidate,
    PhotoAnalysis,
    aligned_from_record,
    aligned_record,
    analysis_from_record,
    analysis_record,
)
from curate.cache import JournalWriter, ResultStore, link_tree, settings_key
from faces.types import FaceBox


def test_finished_records_survive_and_started_ones_are_in_flight(tmp_path: Path) -> None:
    store = ResultStore(tmp_path / "faces")
    writer = store.writer()
    writer.started("a")
    writer.finished("a", {"value": 1.5})
    writer.started("b")  # the process dies here
    contents = store.load()
    assert contents.records == {"a": {"value": 1.5}}
    assert contents.in_flight == {"b"}


def test_a_torn_last_line_is_ignored(tmp_path: Path) -> None:
    store = ResultStore(tmp_path / "faces")
    writer = store.writer()
    writer.finished("a", {"value": 1})
    journal = next(store.root.glob("journal-*.jsonl"))
    with journal.open("ab") as handle:
        handle.write(b'{"key": "b", "record": {"val')  # killed in the middle of a write
    assert store.load().records == {"a": {"value": 1}}


def test_compaction_keeps_every_record_in_one_shard(tmp_path: Path) -> None:
    store = ResultStore(tmp_path / "faces")
    for key in ("a", "b"):
        writer = JournalWriter(store.root)  # two processes, two journals
        writer.finished(key, {"key": key, "xs": [0.1, 1e-300, 3.0]})
    before = store.load().records
    assert store.compact() == before
    assert [p.name.split("-")[0] for p in store.files()] == ["shard"]
    assert store.load().records == before


def test_a_journal_becomes_a_shard_every_rotate_every_records(tmp_path: Path) -> None:
    store = ResultStore(tmp_path / "faces")
    writer = store.writer(rotate_every=2)
    for k in range(5):
        writer.finished(str(k), {"k": k})
    names = sorted(p.name.split("-")[0] for p in store.files())
    assert names == ["journal", "shard", "shard"]
    writer.close()
    assert len(store.load().records) == 5
    store.compact()  # however many shards the writers left, one remains
    assert [p.name.split("-")[0] for p in store.files()] == ["shard"] and len(store.load().records) == 5
    with pytest.raises(ValueError, match="rotate_every"):
        JournalWriter(store.root, 0)


def test_a_record_in_both_a_shard_and_a_journal_is_read_once(tmp_path: Path) -> None:
    # Killed after the shard was written but before its journal was removed.
    store = ResultStore(tmp_path / "faces")
    writer = store.writer()
    writer.finished("a", {"v": 2})
    journal = next(store.root.glob("journal-*.jsonl"))
    saved = journal.read_bytes()
    writer.close()
    journal.write_bytes(saved)
    assert store.load().records == {"a": {"v": 2}}


def test_settings_key_is_stable_and_order_free() -> None:
    a = settings_key({"min_face": 512, "faces": {"detector": "hog"}})
    assert a == settings_key({"faces": {"detector": "hog"}, "min_face": 512})
    assert a != settings_key({"min_face": 511, "faces": {"detector": "hog"}})
    assert len(a) == 16


def _analysis(rng: np.random.Generator) -> PhotoAnalysis:
    embedding = rng.normal(size=128).astype(np.float32)
    candidate = Candidate(
        box=FaceBox(10.25, 20.5, 310.125, 330.0, 0.731),
        landmarks=rng.uniform(0, 500, size=(68, 2)),
        embedding=embedding / np.linalg.norm(embedding),
        face_size=float(rng.uniform(200, 900)),
        sharpness=float(rng.uniform(0, 500)),
    )
    return PhotoAnalysis(1024, 768, 2, (candidate,))


def test_records_round_trip_exactly_through_json() -> None:
    rng = np.random.default_rng(0)
    analysis = _analysis(rng)
    back = analysis_from_record(json.loads(json.dumps(analysis_record(analysis))))
    (a,), (b,) = analysis.candidates, back.candidates
    assert back.width == 1024 and back.n_faces == 2 and a.box == b.box
    assert np.array_equal(a.landmarks, b.landmarks) and np.array_equal(a.embedding, b.embedding)
    assert b.embedding.dtype == np.float32 and (a.face_size, a.sharpness) == (b.face_size, b.sharpness)
    rejected = PhotoAnalysis(10, 10, 0, reason="no_face", detail="none")
    assert analysis_from_record(analysis_record(rejected)) == rejected

    dhash = rng.random(256) > 0.5
    aligned = AlignedPhoto(None, rng.uniform(0, 512, (68, 2)), rng.normal(size=(2, 3)), "dlib in box", dhash)
    again = aligned_from_record(json.loads(json.dumps(aligned_record(aligned))))
    assert np.array_equal(again.dhash, dhash) and np.array_equal(again.matrix, aligned.matrix)
    assert np.array_equal(again.landmarks, aligned.landmarks) and again.landmark_source == "dlib in box"


def test_link_tree_links_files_and_folders(tmp_path: Path) -> None:
    src = tmp_path / "src"
    (src / "images").mkdir(parents=True)
    (src / "images" / "a.png").write_bytes(b"png")
    (src / "shard.parquet").write_bytes(b"pq")
    link_tree(src, tmp_path / "dst")
    assert (tmp_path / "dst" / "images" / "a.png").read_bytes() == b"png"
    assert (tmp_path / "dst" / "shard.parquet").stat().st_ino == (src / "shard.parquet").stat().st_ino
    link_tree(src / "shard.parquet", tmp_path / "one" / "x.parquet")
    assert (tmp_path / "one" / "x.parquet").read_bytes() == b"pq"
