"""Per-photo results that survive a crash: append-only journals, compacted into Parquet shards.

A :class:`ResultStore` is one folder holding the results of one kind of work (say, face analysis under one
set of settings), each a JSON-able record under a string key (the photo's sha256, ...):

- ``journal-<token>.jsonl``: written by one process while it works. A ``{"started": key}`` line goes out
  before the work on ``key`` begins and ``{"key": key, "record": {...}}`` once it is done, each line with a
  single ``write`` on an append-only file, so a process killed at any moment leaves whole lines and at
  most one torn last line (ignored on reading).
- ``shard-<token>.parquet``: a journal compacted, written atomically. A journal is removed only after its
  shard is in place; a record found in both is the same record.

Keys started but never finished are the work that was in flight when a process died: :meth:`ResultStore.load`
reports them, so a resumed run can say how much it redoes.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from celebref.atomic import atomic_path

__all__ = ["ResultStore", "StoreContents", "JournalWriter", "Record", "settings_key", "link_tree"]

Record = dict[str, Any]
JOURNAL_GLOB = "journal-*.jsonl"
SHARD_GLOB = "shard-*.parquet"


def settings_key(settings: Mapping[str, Any]) -> str:
    """A short stable hash of JSON-able ``settings`` (key order does not matter)."""
    text = json.dumps(settings, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


@dataclass(frozen=True)
class StoreContents:
    """What a store holds: finished records, and keys that were started but never finished."""

    records: dict[str, Record]
    in_flight: frozenset[str]


def _read_journal(path: Path) -> tuple[dict[str, Record], set[str]]:
    records: dict[str, Record] = {}
    started: set[str] = set()
    with path.open("rb") as handle:
        for line in handle:
            try:
                entry = json.loads(line)
            except ValueError:
                continue  # the torn last line of a killed writer
            if "started" in entry:
                started.add(str(entry["started"]))
            elif "key" in entry:
                records[str(entry["key"])] = entry["record"]
    return records, started


def _read_shard(path: Path) -> dict[str, Record]:
    rows = pq.read_table(path).to_pylist()
    return {str(row["key"]): json.loads(row["record"]) for row in rows}


def _write_shard(path: Path, records: Mapping[str, Record]) -> None:
    # Records stay JSON text inside the shard: floats round-trip exactly and every kind of record
    # shares one two-column schema.
    keys = list(records)
    table = pa.table(
        {
            "key": pa.array(keys, type=pa.string()),
            "record": pa.array([json.dumps(records[k], separators=(",", ":")) for k in keys], pa.string()),
        }
    )
    with atomic_path(path) as tmp:
        pq.write_table(table, tmp)


@dataclass(frozen=True)
class ResultStore:
    """The folder of one kind of per-photo result; see the module docstring for its layout."""

    root: Path

    def load(self) -> StoreContents:
        """Every finished record (shards and journals) and the keys in flight when a writer stopped."""
        records: dict[str, Record] = {}
        started: set[str] = set()
        if self.root.is_dir():
            for shard in sorted(self.root.glob(SHARD_GLOB)):
                records.update(_read_shard(shard))
            for journal in sorted(self.root.glob(JOURNAL_GLOB)):
                done, begun = _read_journal(journal)
                records.update(done)
                started |= begun
        return StoreContents(records, frozenset(started - set(records)))

    def compact(self) -> dict[str, Record]:
        """Fold every journal and shard into one shard (call only while no writer is running); returns
        every record, so a caller need not read the store again.

        The new shard is in place before any old file goes, so a kill in between leaves each record
        twice, never lost.
        """
        old = self.files()
        records = self.load().records
        if len(old) <= 1 and not any(p.name.startswith("journal-") for p in old):
            return records
        if records:
            _write_shard(self.root / f"shard-{uuid.uuid4().hex}.parquet", records)
        for path in old:
            path.unlink()
        return records

    def files(self) -> list[Path]:
        """The store's shard and journal files."""
        if not self.root.is_dir():
            return []
        return sorted([*self.root.glob(SHARD_GLOB), *self.root.glob(JOURNAL_GLOB)])

    def writer(self, rotate_every: int = 512) -> JournalWriter:
        return JournalWriter(self.root, rotate_every)


class JournalWriter:
    """Appends one process's results to its own journal; every ``rotate_every`` records the journal
    becomes a shard, so journals stay small however long the run."""

    def __init__(self, root: Path, rotate_every: int = 512) -> None:
        if rotate_every < 1:
            raise ValueError(f"rotate_every must be >= 1, got {rotate_every}")
        self.root = root
        self.rotate_every = rotate_every
        self._fd: int | None = None
        self._path: Path | None = None
        self._records: dict[str, Record] = {}

    def _open(self) -> int:
        if self._fd is None:
            self.root.mkdir(parents=True, exist_ok=True)
            self._path = self.root / f"journal-{uuid.uuid4().hex}.jsonl"
            self._fd = os.open(self._path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        return self._fd

    def _line(self, entry: Mapping[str, Any]) -> None:
        data = (json.dumps(entry, separators=(",", ":")) + "\n").encode("utf-8")
        written = os.write(self._open(), data)
        if written != len(data):  # a full disk; the line is torn and will be ignored
            raise OSError(f"{self._path}: short write ({written} of {len(data)} bytes)")

    def started(self, key: str) -> None:
        self._line({"started": key})

    def finished(self, key: str, record: Record) -> None:
        self._line({"key": key, "record": record})
        self._records[key] = record
        if len(self._records) >= self.rotate_every:
            self.rotate()

    def rotate(self) -> None:
        """Turn the current journal into a shard and start a fresh one on the next write."""
        if self._fd is None:
            return
        os.close(self._fd)
        self._fd = None
        if self._records:
            _write_shard(self.root / f"shard-{uuid.uuid4().hex}.parquet", self._records)
        assert self._path is not None
        self._path.unlink()
        self._records = {}

    def close(self) -> None:
        self.rotate()


def link_tree(source: Path, target: Path) -> None:
    """Hard-link the file ``source``, or every file under the folder ``source``, to ``target``.

    Links cost no space and no copying; where the file system refuses (another device), files are copied.
    """
    files = [source] if source.is_file() else sorted(p for p in source.rglob("*") if p.is_file())
    for file in files:
        dest = target if file == source else target / file.relative_to(source)
        dest.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.link(file, dest)
        except OSError:
            shutil.copy2(file, dest)
