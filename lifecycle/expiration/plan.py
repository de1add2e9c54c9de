"""Phase-1 planning: the files only the expired snapshots reach (reachable before − reachable after).

Both sides are computed against ONE metadata object, the one the commit is based on; the commit's
requirements then guarantee the catalog still holds exactly that snapshot set and those refs.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from typing import Any

from pyiceberg.io import FileIO
from pyiceberg.table.metadata import TableMetadata

from lifecycle.expiration.retention import Selection
from lifecycle.iceberg.reachability import ManifestCache, default_cache, reachable_from

MANIFEST_LIST = "manifest-list"
MANIFEST = "manifest"
DATA = "data"
DELETE = "delete"
STATISTICS = "statistics"


@dataclass(frozen=True)
class DeadFile:
    path: str
    kind: str                         # one of the constants above
    bytes: int | None
    snapshot_ids: tuple[int, ...]     # the expired snapshots that reached it


@dataclass(frozen=True)
class ExpirePlan:
    table: str
    base_snapshot_id: int | None
    base_metadata_location: str
    selection: Selection
    files: tuple[DeadFile, ...]

    def counts(self) -> dict[str, int]:
        out: dict[str, int] = {"snapshots": len(self.selection.expire_ids), "refs": len(self.selection.expired_refs),
                               "files": len(self.files), "bytes": sum(f.bytes or 0 for f in self.files)}
        for f in self.files:
            out[f"files_{f.kind}"] = out.get(f"files_{f.kind}", 0) + 1
        return out

    def payload(self) -> dict[str, Any]:
        """JSON-ready; the per-file list lives in the journal rows, not here."""
        return {
            "expire_ids": list(self.selection.expire_ids),
            "expired_refs": list(self.selection.expired_refs),
            "base_metadata_location": self.base_metadata_location,
            "cutoff_ms": self.selection.cutoff_ms,
            "counts": self.counts(),
        }

    def dry_run(self, limit: int = 200) -> dict[str, Any]:
        return {**self.payload(), "files": [
            {"path": f.path, "kind": f.kind, "bytes": f.bytes} for f in self.files[:limit]],
            "files_truncated": max(0, len(self.files) - limit)}


def plan_expiration(
    table: str, io: FileIO, metadata: TableMetadata, metadata_location: str, selection: Selection,
    cache: ManifestCache | None = None,
) -> ExpirePlan:
    expired = set(selection.expire_ids)
    gone = [s for s in metadata.snapshots if s.snapshot_id in expired]
    kept = [s for s in metadata.snapshots if s.snapshot_id not in expired]
    before = reachable_from(io, metadata, metadata.snapshots, cache)
    after = reachable_from(io, metadata, kept, cache)
    after_paths = after.all_paths()

    # Which expired snapshots reach each dead manifest (for the cold-tier catalog's snapshot ids).

    c = cache or default_cache()
    manifest_snaps: dict[str, set[int]] = defaultdict(set)
    file_snaps: dict[str, set[int]] = defaultdict(set)
    files: list[DeadFile] = []
    for snap in gone:
        if snap.manifest_list not in after_paths:
            files.append(DeadFile(snap.manifest_list, MANIFEST_LIST, None, (snap.snapshot_id,)))
        for ref in c.manifest_list(io, snap.manifest_list):
            if ref.path not in after_paths:
                manifest_snaps[ref.path].add(snap.snapshot_id)
    lengths: dict[str, int] = {}
    for snap in gone:
        for ref in c.manifest_list(io, snap.manifest_list):
            if ref.path in manifest_snaps and ref.path not in lengths:
                lengths[ref.path] = ref.length
                for f in c.manifest(io, ref):
                    if f.path not in after_paths:
                        file_snaps[f.path] |= manifest_snaps[ref.path]
    for path in sorted(manifest_snaps):
        files.append(DeadFile(path, MANIFEST, lengths.get(path), tuple(sorted(manifest_snaps[path]))))
    for path, fref in sorted({**before.data_files, **before.delete_files}.items()):
        if path in after_paths:
            continue
        kind = DATA if fref.content == 0 else DELETE
        files.append(DeadFile(path, kind, fref.size, tuple(sorted(file_snaps.get(path, ())))))
    stat_sizes = {s.statistics_path: (s.file_size_in_bytes, s.snapshot_id) for s in metadata.statistics}
    stat_sizes.update({s.statistics_path: (s.file_size_in_bytes, s.snapshot_id)
                       for s in metadata.partition_statistics})
    for path in sorted(before.statistics - after_paths):
        size, sid = stat_sizes.get(path, (None, None))
        files.append(DeadFile(path, STATISTICS, size, (sid,) if sid is not None else ()))
    return ExpirePlan(table, metadata.current_snapshot_id, metadata_location, selection, tuple(files))
