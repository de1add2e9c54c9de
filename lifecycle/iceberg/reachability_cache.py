"""A persistent, path-keyed manifest cache: a daily run in a fresh process reads only what is new.

Manifest lists and manifests never change once written, so what was decoded once is kept in a small
SQLite file (one per worker host, under the data folder; it is a cache: deleting it only costs one cold
run). Lists are stored as arrays of row ids into a table of manifest references, so the N² repeated
entries of an append-only history cost 8 bytes each; manifests as marshalled tuples.

Every list and manifest row carries the day it was last used (recorded when a run reads or stores it, and
for in-memory hits when the process trims its caches after a run). Once a day, rows unused for
`MAX_AGE_DAYS` go: those of expired snapshots, which no run asks for again. Manifest references (one small
row per manifest ever seen, shared by the lists) are kept: other processes hold their ids.
"""

from __future__ import annotations

import marshal
import sqlite3
import threading
import time
from array import array
from collections.abc import Callable
from pathlib import Path

from lifecycle.iceberg.reachability import FileRef, ManifestCache, ManifestRef

MAX_AGE_DAYS = 30
_SCHEMA = """
CREATE TABLE IF NOT EXISTS manifest_refs (id INTEGER PRIMARY KEY, path TEXT UNIQUE NOT NULL,
    content INTEGER NOT NULL, length INTEGER NOT NULL, spec_id INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS lists (path TEXT PRIMARY KEY, ids BLOB NOT NULL, last_used INTEGER NOT NULL DEFAULT 0);
CREATE TABLE IF NOT EXISTS manifests (path TEXT PRIMARY KEY, files BLOB NOT NULL,
    last_used INTEGER NOT NULL DEFAULT 0);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL);
"""
_TABLES = ("lists", "manifests")


def _today() -> int:
    return int(time.time() // 86_400)


class PersistentManifestCache(ManifestCache):
    def __init__(self, path: Path, today: Callable[[], int] = _today) -> None:
        super().__init__()
        path.parent.mkdir(parents=True, exist_ok=True)
        self._today = today
        self._db = sqlite3.connect(str(path), check_same_thread=False, timeout=30, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")   # WAL + NORMAL: may lose the last writes, never corrupts
        self._db.executescript(_SCHEMA)
        for table in _TABLES:   # a cache file from before last_used: its rows count as used today
            if "last_used" not in {row[1] for row in self._db.execute(f"PRAGMA table_info({table})")}:
                self._db.execute(f"ALTER TABLE {table} ADD COLUMN last_used INTEGER NOT NULL DEFAULT 0")
                self._db.execute(f"UPDATE {table} SET last_used = ?", (today(),))
        self._db_lock = threading.Lock()
        self._by_id: dict[int, ManifestRef] = {}
        self._ids: dict[str, int] = {}
        self.db_hits = 0

    def _ref_ids(self, refs: tuple[ManifestRef, ...]) -> array[int]:
        new = [r for r in dict.fromkeys(refs) if r.path not in self._ids]
        if new:
            self._db.executemany(
                "INSERT OR IGNORE INTO manifest_refs (path, content, length, spec_id) VALUES (?,?,?,?)",
                [(r.path, r.content, r.length, r.spec_id) for r in new])
            self._load_refs()
        return array("q", (self._ids[r.path] for r in refs))

    def _load_refs(self) -> None:
        for rid, path, content, length, spec_id in self._db.execute(
                "SELECT id, path, content, length, spec_id FROM manifest_refs WHERE id > ?",
                (max(self._by_id, default=0),)):
            self._by_id[rid] = ManifestRef(path, content, length, spec_id)
            self._ids[path] = rid

    def _load_list(self, path: str) -> tuple[ManifestRef, ...] | None:
        with self._db_lock:
            row = self._db.execute("SELECT ids FROM lists WHERE path = ?", (path,)).fetchone()
            if row is None:
                return None
            ids = array("q")
            ids.frombytes(row[0])
            if any(i not in self._by_id for i in ids):   # written by another process since we loaded
                self._load_refs()
                if any(i not in self._by_id for i in ids):   # never expected; a miss re-reads the list
                    return None
            self.db_hits += 1
            return tuple(self._by_id[i] for i in ids)

    def _store_list(self, path: str, refs: tuple[ManifestRef, ...]) -> None:
        with self._db_lock:
            ids = self._ref_ids(refs)
            self._db.execute("INSERT OR REPLACE INTO lists (path, ids, last_used) VALUES (?, ?, ?)",
                             (path, ids.tobytes(), self._today()))

    def _load_manifest(self, path: str) -> tuple[FileRef, ...] | None:
        with self._db_lock:
            row = self._db.execute("SELECT files FROM manifests WHERE path = ?", (path,)).fetchone()
        if row is None:
            return None
        self.db_hits += 1
        return tuple(FileRef(*f) for f in marshal.loads(row[0]))

    def _store_manifest(self, path: str, files: tuple[FileRef, ...]) -> None:
        blob = marshal.dumps([(f.path, f.content, f.size, f.record_count) for f in files])
        with self._db_lock:
            self._db.execute("INSERT OR REPLACE INTO manifests (path, files, last_used) VALUES (?, ?, ?)",
                             (path, blob, self._today()))

    def _persist_touched(self, lists: set[str], manifests: set[str]) -> None:
        today = self._today()
        with self._db_lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                for table, paths in (("lists", lists), ("manifests", manifests)):
                    self._db.executemany(f"UPDATE {table} SET last_used = ? WHERE path = ? AND last_used < ?",
                                         ((today, p, today) for p in paths))
                row = self._db.execute("SELECT value FROM meta WHERE key = 'pruned_day'").fetchone()
                if row is None or row[0] < today:
                    for table in _TABLES:
                        self._db.execute(f"DELETE FROM {table} WHERE last_used < ?", (today - MAX_AGE_DAYS,))
                    self._db.execute("INSERT OR REPLACE INTO meta (key, value) VALUES ('pruned_day', ?)", (today,))
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise


_caches: dict[Path, PersistentManifestCache] = {}
_caches_lock = threading.Lock()


def persistent_cache(path: Path) -> PersistentManifestCache:
    """One cache per file per process (the in-memory layer is shared by every job of the process)."""
    with _caches_lock:
        if path not in _caches:
            _caches[path] = PersistentManifestCache(path)
        return _caches[path]


def cache_for(data_dir: Path) -> PersistentManifestCache:
    """The host's cache file under the data folder."""
    return persistent_cache(data_dir / "cache" / "manifests.sqlite")
