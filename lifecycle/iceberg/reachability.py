"""Reachability: which files a set of snapshots can read, and the table's complete live set.

Manifest lists and manifests never change once written, so their contents are cached by path: each is
read once per process (and a persistent cache may sit behind `ManifestCache`). Reading is de-duplicated
by path across snapshots.
"""

from __future__ import annotations

import importlib
import threading
import weakref
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from pyiceberg.io import FileIO
from pyiceberg.manifest import ManifestContent, ManifestFile, read_manifest_list
from pyiceberg.table.metadata import TableMetadata
from pyiceberg.table.snapshots import Snapshot

from lifecycle.iceberg.manifest_entries import read_live_entries
from lifecycle.iceberg.manifest_lists import read_entries

_rust_manifest: Any
try:
    _rust_manifest = importlib.import_module("pyiceberg_core.manifest")
except ImportError:  # pragma: no cover - pyiceberg-core is a dependency, but stay usable without it
    _rust_manifest = None

_DELETED = 2  # manifest entry status


@dataclass(frozen=True)
class ManifestRef:
    path: str
    content: int          # 0 data, 1 deletes
    length: int
    spec_id: int


@dataclass(frozen=True)
class FileRef:
    path: str
    content: int          # 0 data, 1 position deletes, 2 equality deletes
    size: int
    record_count: int


_process_caches: weakref.WeakSet[ManifestCache] = weakref.WeakSet()


class ManifestCache:
    """In-process cache of manifest-list and manifest contents, keyed by path (they are immutable).

    `light=False` reads only with the reference decoders (pyiceberg-core, then PyIceberg): the checks made
    right before a delete use it, so a bug in the light readers could slow planning down, never make a live
    file look dead.
    """

    def __init__(self, light: bool = True) -> None:
        self.light = light
        self._lists: dict[str, tuple[ManifestRef, ...]] = {}
        self._manifests: dict[str, tuple[FileRef, ...]] = {}
        self._interned: dict[bytes, ManifestRef] = {}
        self._lock = threading.Lock()
        self._touched_lists: set[str] = set()
        self._touched_manifests: set[str] = set()
        self.list_reads = 0
        self.manifest_reads = 0
        _process_caches.add(self)

    # A persistent cache (lifecycle.iceberg.reachability_cache) overrides these two pairs; the default keeps nothing.
    def _load_list(self, path: str) -> tuple[ManifestRef, ...] | None:
        return None

    def _store_list(self, path: str, refs: tuple[ManifestRef, ...]) -> None:
        return None

    def _load_manifest(self, path: str) -> tuple[FileRef, ...] | None:
        return None

    def _store_manifest(self, path: str, files: tuple[FileRef, ...]) -> None:
        return None

    def _persist_touched(self, lists: set[str], manifests: set[str]) -> None:
        return None

    def trim(self) -> int:
        """Forget in memory what no lookup has asked for since the previous trim; returns how many entries
        went. Bounds a long-lived worker's memory by one run's working set (a persistent cache also records
        the use, for its own age-based pruning)."""
        with self._lock:
            lists, manifests = self._touched_lists, self._touched_manifests
            self._touched_lists, self._touched_manifests = set(), set()
            before = len(self._lists) + len(self._manifests)
            self._lists = {p: v for p, v in self._lists.items() if p in lists}
            self._manifests = {p: v for p, v in self._manifests.items() if p in manifests}
            self._interned.clear()   # only shares equal refs between lists; rebuilt by the next reads
            dropped = before - len(self._lists) - len(self._manifests)
        self._persist_touched(lists, manifests)
        return dropped

    def manifest_list(self, io: FileIO, path: str) -> tuple[ManifestRef, ...]:
        with self._lock:
            self._touched_lists.add(path)
            hit = self._lists.get(path)
        if hit is not None:
            return hit
        refs = self._load_list(path)
        if refs is None:
            data = _read_bytes(io, path)
            light = None
            if self.light:
                with self._lock:
                    light = read_entries(data, self._interned, _make_ref)
            refs = tuple(light) if light is not None else _read_manifest_list(io, path, data)
            self._store_list(path, refs)
            self.list_reads += 1
        with self._lock:
            self._lists[path] = refs
        return refs

    def manifest(self, io: FileIO, ref: ManifestRef) -> tuple[FileRef, ...]:
        """Live (added or existing) entries of a manifest; deleted entries are not readable."""
        with self._lock:
            self._touched_manifests.add(ref.path)
            hit = self._manifests.get(ref.path)
        if hit is not None:
            return hit
        files = self._load_manifest(ref.path)
        if files is None:
            files = _read_manifest(io, ref, self.light)
            self._store_manifest(ref.path, files)
            self.manifest_reads += 1
        with self._lock:
            self._manifests[ref.path] = files
        return files


def _make_ref(path: str, length: int, spec_id: int, content: int) -> ManifestRef:
    return ManifestRef(path, content, length, spec_id)


def _read_bytes(io: FileIO, path: str) -> bytes:
    with io.new_input(path).open() as f:
        data: bytes = f.read()
    return data


def _read_manifest_list(io: FileIO, path: str, data: bytes) -> tuple[ManifestRef, ...]:
    """Fallbacks of the light reader: pyiceberg-core's Rust Avro decoder (about 2x PyIceberg's), then
    PyIceberg's own reader if that refuses the file."""
    if _rust_manifest is not None:
        try:
            entries = _rust_manifest.read_manifest_list(data).entries()
            return tuple(ManifestRef(m.manifest_path, int(m.content), int(m.manifest_length),
                                     int(m.partition_spec_id)) for m in entries)
        except Exception:  # any refusal: the reference reader below
            pass
    return tuple(
        ManifestRef(m.manifest_path, int(m.content), m.manifest_length, m.partition_spec_id)
        for m in read_manifest_list(io.new_input(path))
    )


def _read_manifest(io: FileIO, ref: ManifestRef, use_light: bool = True) -> tuple[FileRef, ...]:
    """The light reader (schema compiled once per distinct schema); then pyiceberg-core; then PyIceberg."""
    data = _read_bytes(io, ref.path)
    light = read_live_entries(data) if use_light else None
    if light is not None:
        return tuple(FileRef(path, content, size, count) for _status, content, path, count, size in light)
    if _rust_manifest is not None:
        try:
            entries = _rust_manifest.read_manifest_entries(data).entries()
            return tuple(
                FileRef(e.data_file.file_path, int(e.data_file.content), int(e.data_file.file_size_in_bytes),
                        int(e.data_file.record_count))
                for e in entries if int(e.status) != _DELETED
            )
        except Exception:
            pass
    mf = ManifestFile.from_args(
        manifest_path=ref.path, manifest_length=ref.length, partition_spec_id=ref.spec_id,
        content=ManifestContent(ref.content), sequence_number=0, min_sequence_number=0,
        added_snapshot_id=0,
    )
    return tuple(
        FileRef(e.data_file.file_path, int(e.data_file.content), e.data_file.file_size_in_bytes,
                e.data_file.record_count)
        for e in mf.fetch_manifest_entry(io, discard_deleted=True)
    )


def trim_process_caches() -> int:
    """Trim every manifest cache this process holds (after each job run); returns the entries dropped."""
    return sum(cache.trim() for cache in list(_process_caches))


_default_cache = ManifestCache()
def default_cache() -> ManifestCache:
    return _default_cache


@dataclass
class Reachable:
    """Files reachable from a set of snapshots, by kind."""

    manifest_lists: set[str] = field(default_factory=set)
    manifests: set[str] = field(default_factory=set)
    data_files: dict[str, FileRef] = field(default_factory=dict)
    delete_files: dict[str, FileRef] = field(default_factory=dict)
    statistics: set[str] = field(default_factory=set)

    def all_paths(self) -> set[str]:
        return (self.manifest_lists | self.manifests | set(self.data_files) | set(self.delete_files)
                | self.statistics)


def reachable_from(
    io: FileIO, metadata: TableMetadata, snapshots: Iterable[Snapshot], cache: ManifestCache | None = None,
) -> Reachable:
    """Every file the given snapshots can read: manifest lists, manifests, data and delete files, and
    the statistics files attached to them. Each manifest list and manifest is read at most once."""
    cache = cache or _default_cache
    out = Reachable()
    seen_manifests: set[str] = set()
    ids = set()
    for snap in snapshots:
        ids.add(snap.snapshot_id)
        out.manifest_lists.add(snap.manifest_list)
        for ref in cache.manifest_list(io, snap.manifest_list):
            out.manifests.add(ref.path)
            if ref.path in seen_manifests:
                continue
            seen_manifests.add(ref.path)
            for f in cache.manifest(io, ref):
                (out.data_files if f.content == 0 else out.delete_files)[f.path] = f
    for stat in metadata.statistics:
        if stat.snapshot_id in ids:
            out.statistics.add(stat.statistics_path)
    for pstat in metadata.partition_statistics:
        if pstat.snapshot_id in ids:
            out.statistics.add(pstat.statistics_path)
    return out


def metadata_files(metadata: TableMetadata, current_location: str | None) -> set[str]:
    """Every metadata file in the metadata log, the current one, and the version hint."""
    paths = {entry.metadata_file for entry in metadata.metadata_log}
    if current_location:
        paths.add(current_location)
        base = current_location.rsplit("/", 1)[0]
        paths.add(f"{base}/version-hint.text")
    return paths


def live_set(io: FileIO, metadata: TableMetadata, current_location: str | None,
             cache: ManifestCache | None = None) -> set[str]:
    """The complete live set: every file any retained snapshot (of any branch or tag) can read, their
    manifests and manifest lists, every metadata file in the log and the current one, statistics and
    partition-statistics files (all of them, attached or not), and the version hint."""
    reach = reachable_from(io, metadata, metadata.snapshots, cache)
    live = reach.all_paths() | metadata_files(metadata, current_location)
    live |= {s.statistics_path for s in metadata.statistics}
    live |= {s.statistics_path for s in metadata.partition_statistics}
    return live
