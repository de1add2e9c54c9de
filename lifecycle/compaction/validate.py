"""Rewrite validation from each group's base snapshot, as Iceberg's RewriteFiles with validateFromSnapshot.

Every commit attempt (PyIceberg's internal retries included) checks each group against the table's current
head of `main`:

1. the group's base snapshot is still an ancestor of the head (not rolled back past, not expired);
2. every input data file is live at the head (nobody removed or replaced it since the base);
3. no delete file added by a snapshot after the base applies to an input: a position delete or deletion
   vector naming it (by `referenced_data_file`, else by the bounds of its `file_path` column, else assumed),
   or an equality delete in its partition (or in an unpartitioned spec);
4. the table's default partition spec is the one the outputs were written for.

PyIceberg 0.12's own check for 3 filters delete files by the sequence number of the window's HEAD, so a
delete that landed before some later commit is missed and the rewrite brings the deleted row back; this
module reads the window itself instead. Appends by others are never a conflict for a rewrite.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from pyiceberg.manifest import DataFile, DataFileContent, ManifestContent, ManifestEntryStatus
from pyiceberg.table.metadata import TableMetadata
from pyiceberg.table.snapshots import Snapshot

from lifecycle.iceberg.partitions import values_of

FILE_PATH_FIELD_ID = 2147483546   # the `file_path` column of a position delete file


@dataclass(frozen=True)
class RewriteCheck:
    """What one group's commit must still be true of: its base, its inputs and the spec of its outputs."""

    key: str                          # the plan id
    base_snapshot_id: int | None
    inputs: frozenset[str]
    spec_id: int


@dataclass(frozen=True)
class _AddedDelete:
    content: DataFileContent
    spec_id: int
    partition: tuple[Any, ...]
    referenced: str | None
    bounds: tuple[bytes, bytes] | None


@dataclass
class WindowCache:
    """Delete files each snapshot added, read once per commit call (its retries walk the same snapshots)."""

    by_snapshot: dict[int, list[_AddedDelete]] = field(default_factory=dict)

    def added_deletes(self, snap: Snapshot, io: Any) -> list[_AddedDelete]:
        hit = self.by_snapshot.get(snap.snapshot_id)
        if hit is None:
            hit = []
            for manifest in snap.manifests(io):
                if manifest.content != ManifestContent.DELETES or manifest.added_snapshot_id != snap.snapshot_id:
                    continue
                for entry in manifest.fetch_manifest_entry(io, discard_deleted=True):
                    if entry.status == ManifestEntryStatus.ADDED:
                        hit.append(_describe(entry.data_file))
            self.by_snapshot[snap.snapshot_id] = hit
        return hit


def _describe(df: DataFile) -> _AddedDelete:
    referenced = getattr(df, "referenced_data_file", None)
    lower = (df.lower_bounds or {}).get(FILE_PATH_FIELD_ID)
    upper = (df.upper_bounds or {}).get(FILE_PATH_FIELD_ID)
    return _AddedDelete(df.content, int(df.spec_id), values_of(df.partition), referenced,
                        (lower, upper) if lower is not None and upper is not None else None)


def _applies(delete: _AddedDelete, path: str, df: DataFile, unpartitioned: set[int]) -> bool:
    if delete.content == DataFileContent.POSITION_DELETES:
        if delete.referenced is not None:
            return delete.referenced == path
        if delete.bounds is None or not path.isascii():
            return True
        lower, upper = delete.bounds
        return lower <= path.encode() <= upper
    if delete.spec_id in unpartitioned:
        return True
    return delete.spec_id != df.spec_id or delete.partition == values_of(df.partition)


def _window(metadata: TableMetadata, head: Snapshot, base_id: int) -> list[Snapshot] | None:
    """Snapshots after the base up to the head (newest first); None when the base is not an ancestor."""
    out: list[Snapshot] = []
    snap: Snapshot | None = head
    while snap is not None:
        if snap.snapshot_id == base_id:
            return out
        out.append(snap)
        parent = snap.parent_snapshot_id
        snap = metadata.snapshot_by_id(parent) if parent is not None else None
    return None


def conflicts(metadata: TableMetadata, io: Any, checks: Sequence[RewriteCheck], live: Mapping[str, DataFile],
              cache: WindowCache | None = None) -> dict[str, str]:
    """{group key: reason} for every group that may not commit on the current head; {} when all may."""
    cache = cache or WindowCache()
    head = metadata.current_snapshot()
    unpartitioned = {s.spec_id for s in metadata.partition_specs if s.is_unpartitioned()}
    out: dict[str, str] = {}
    for check in checks:
        if check.spec_id != metadata.default_spec_id:
            out[check.key] = f"the default partition spec changed ({check.spec_id} -> {metadata.default_spec_id})"
            continue
        missing = sorted(p for p in check.inputs if p not in live)
        if missing:
            out[check.key] = f"{len(missing)} input file(s) were removed concurrently, e.g. {missing[0]}"
            continue
        if head is None or check.base_snapshot_id is None:
            out[check.key] = "the table has no base snapshot to validate from"
            continue
        window = _window(metadata, head, check.base_snapshot_id)
        if window is None:
            out[check.key] = f"base snapshot {check.base_snapshot_id} is no longer an ancestor of main"
            continue
        hit = _first_delete(window, io, check.inputs, live, unpartitioned, cache)
        if hit is not None:
            out[check.key] = hit
    return out


def _first_delete(window: Iterable[Snapshot], io: Any, inputs: Iterable[str], live: Mapping[str, DataFile],
                  unpartitioned: set[int], cache: WindowCache) -> str | None:
    for snap in window:
        for delete in cache.added_deletes(snap, io):
            for path in inputs:
                if _applies(delete, path, live[path], unpartitioned):
                    kind = "position" if delete.content == DataFileContent.POSITION_DELETES else "equality"
                    return f"snapshot {snap.snapshot_id} added a {kind} delete that applies to input {path}"
    return None
