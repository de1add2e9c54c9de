"""A table's live data files, per partition of the default spec (files with deletes attached excluded)."""

from __future__ import annotations

from dataclasses import dataclass, field

from pyiceberg.expressions import AlwaysTrue, BooleanExpression
from pyiceberg.manifest import DataFile
from pyiceberg.table import Table

from lifecycle.compaction.planner import FileInfo
from lifecycle.partitions import PartitionKey, format_partition, row_filter


@dataclass
class PartitionFiles:
    partition: str
    files: dict[str, DataFile] = field(default_factory=dict)

    def infos(self) -> list[FileInfo]:
        return [FileInfo(p, int(df.file_size_in_bytes), int(df.record_count)) for p, df in self.files.items()]


def live_files(table: Table, key: PartitionKey | None = None) -> tuple[int | None, dict[str, PartitionFiles]]:
    """(current snapshot id, {partition text: files}) for the default spec, or one partition of it."""
    snapshot = table.current_snapshot()
    if snapshot is None:
        return None, {}
    spec, schema = table.spec(), table.schema()
    expr: BooleanExpression = row_filter(key, spec, schema) if key is not None else AlwaysTrue()
    out: dict[str, PartitionFiles] = {}
    for task in table.scan(row_filter=expr, snapshot_id=snapshot.snapshot_id).plan_files():
        df = task.file
        if df.spec_id != spec.spec_id or task.delete_files:
            continue
        if key is not None and not key.matches(df.spec_id, df.partition):
            continue
        text = key.text if key is not None else format_partition(spec, schema, df.partition)
        out.setdefault(text, PartitionFiles(text)).files[df.file_path] = df
    return snapshot.snapshot_id, out
