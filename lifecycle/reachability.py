"""Reachability: which files a set of snapshots can read, and the table's complete live set.

Manifest lists and manifests never change once written, so their contents are cached by path: each is
read once per process (and a persistent cache may sit behind `ManifestCache`). Reading is de-duplicated
by path across snapshots.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable
from dataclasses import dataclass, field

from pyiceberg.io import FileIO
from pyiceberg.manifest import ManifestContent, ManifestFile, read_manifest_list
from pyiceberg.table.metadata import TableMetadata
from pyiceberg.table.snapshots import Snapshot


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


class ManifestCache:
    """In-process cache of manifest-list and manifest contents, keyed by path (they are immutable)."""

    def __init__(self) -> None:
        self._lists: dict[str, tuple[ManifestRef, ...]] = {}
        self._manifests: dict[str, tuple[FileRef, ...]] = {}
        self._lock = threading.Lock()
        self.list_reads = 0
        self.manifest_reads = 0

    def manifest_list(self, io: FileIO, path: str) -> tuple[ManifestRef, ...]:
        with self._lock:
            hit = self._lists.get(path)
        if hit is not None:
            return hit
        refs = tuple(
            ManifestRef(m.manifest_path, int(m.content), m.manifest_length, m.partition_spec_id)
            for m in read_manifest_list(io.new_input(path))
        )
        with self._lock:
            self._lists[path] = refs
            self.list_reads += 1
        return refs

    def manifest(self, io: FileIO, ref: ManifestRef) -> tuple[FileRef, ...]:
        """Live (added or existing) entries of a manifest; deleted entries are not readable."""
        with self._lock:
            hit = self._manifests.get(ref.path)
        if hit is not None:
            return hit
        mf = ManifestFile.from_args(
            manifest_path=ref.path, manifest_length=ref.length, partition_spec_id=ref.spec_id,
            content=ManifestContent(ref.content), sequence_number=0, min_sequence_number=0,
            added_snapshot_id=0,
        )
        files = tuple(
            FileRef(e.data_file.file_path, int(e.data_file.content), e.data_file.file_size_in_bytes,
                    e.data_file.record_count)
            for e in mf.fetch_manifest_entry(io, discard_deleted=True)
        )
        with self._lock:
            self._manifests[ref.path] = files
            self.manifest_reads += 1
        return files


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
