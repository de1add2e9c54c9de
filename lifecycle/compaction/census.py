"""Per-partition file counts of a table's current snapshot, streamed one manifest at a time.

The compaction fan-out only needs, per partition of the default spec, how many live data files are small: it
never holds the table's DataFiles (~700 B each, millions on a large table), only one manifest's entries at a
time and a few integers per partition. A partition that has any delete file is counted exactly through
`compaction.scan.live_files` for that partition alone (merge-on-read: its files are compaction inputs with
their deletes applied, and a file with many deletes is one whatever its size: `heavy`), and a delete file of
another spec (which may apply anywhere) makes the whole census fall back to `live_files` for the table.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from pyiceberg.manifest import ManifestContent, ManifestEntry

from lifecycle.compaction.scan import live_files
from lifecycle.iceberg.partitions import PartitionKey, format_partition, values_of


@dataclass
class PartitionCount:
    files: int = 0
    small: int = 0        # below the planner's small-file threshold
    backlog: int = 0      # below `small_file_bytes` (the backlog gauge's threshold)
    heavy: int = 0        # rewritten for their deletes whatever their size (merge-on-read)


def _entries(table: Any, content: ManifestContent) -> Iterator[ManifestEntry]:
    snapshot = table.current_snapshot()
    for manifest in snapshot.manifests(table.io):
        if manifest.content == content:
            yield from manifest.fetch_manifest_entry(table.io, discard_deleted=True)


def census(table: Any, small_bytes: int, backlog_bytes: int) -> tuple[int | None, dict[str, PartitionCount]]:
    """(current snapshot id, {partition text: counts}) of the default spec's live data files."""
    snapshot = table.current_snapshot()
    if snapshot is None:
        return None, {}
    spec, schema = table.spec(), table.schema()
    texts: dict[tuple[Any, ...], str] = {}

    def text(values: tuple[Any, ...]) -> str:
        found = texts.get(values)
        if found is None:
            found = texts[values] = format_partition(spec, schema, values)
        return found

    with_deletes: set[tuple[Any, ...]] = set()
    for entry in _entries(table, ManifestContent.DELETES):
        if entry.data_file.spec_id != spec.spec_id:
            return _exact(table, small_bytes, backlog_bytes, None)
        with_deletes.add(values_of(entry.data_file.partition))
    counts: dict[str, PartitionCount] = {}
    for entry in _entries(table, ManifestContent.DATA):
        df = entry.data_file
        values = values_of(df.partition)
        if df.spec_id != spec.spec_id or values in with_deletes:
            continue
        c = counts.setdefault(text(values), PartitionCount())
        size = int(df.file_size_in_bytes)
        c.files += 1
        c.small += size < small_bytes
        c.backlog += size < backlog_bytes
    for values in with_deletes:
        key = PartitionKey(spec.spec_id, values, text(values))
        counts.update(_exact(table, small_bytes, backlog_bytes, key)[1])
    return snapshot.snapshot_id, counts


def _exact(table: Any, small_bytes: int, backlog_bytes: int,
           key: PartitionKey | None) -> tuple[int | None, dict[str, PartitionCount]]:
    snapshot_id, parts = live_files(table, key)
    out: dict[str, PartitionCount] = {}
    for name, files in parts.items():
        sizes = [int(df.file_size_in_bytes) for df in files.files.values()]
        out[name] = PartitionCount(len(sizes), sum(s < small_bytes for s in sizes),
                                   sum(s < backlog_bytes for s in sizes), len(files.heavy))
    return snapshot_id, out
