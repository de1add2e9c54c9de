"""A table's live data files, per partition of the default spec, with the delete files that apply to each.

Merge-on-read: files with deletes attached are compaction candidates like any other (their rows are rewritten
with the deletes applied, lifecycle.compaction.mor_read). A file with at least `delete-file-threshold` delete
files attached, or whose file-scoped position deletes remove at least `delete-ratio-threshold` of its rows, is
rewritten whatever its size (Iceberg's SizeBasedDataRewriter options, read here from the table properties
`lifecycle.compaction.delete-file-threshold` and `lifecycle.compaction.delete-ratio-threshold`).

A partition whose planned groups would need equality deletes this process cannot apply exactly is refused
(`screen`): it is reported with the reason and left alone; the rest of the table goes on.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field

from pyiceberg.expressions import AlwaysTrue, BooleanExpression
from pyiceberg.manifest import DataFile, DataFileContent
from pyiceberg.table import Table

from lifecycle.compaction.mor_equality import max_rows, refusal
from lifecycle.compaction.mor_index import DeleteIndex, referenced, snapshot_files, unpartitioned_specs
from lifecycle.compaction.planner import FileInfo, PartitionPlan, TablePlan
from lifecycle.errors import ConfigError
from lifecycle.iceberg.partitions import PartitionKey, format_partition, row_filter

DELETE_FILE_THRESHOLD_PROPERTY = "lifecycle.compaction.delete-file-threshold"
DELETE_FILE_THRESHOLD_DEFAULT = 5
DELETE_RATIO_THRESHOLD_PROPERTY = "lifecycle.compaction.delete-ratio-threshold"
DELETE_RATIO_THRESHOLD_DEFAULT = 0.3


@dataclass
class PartitionFiles:
    partition: str
    files: dict[str, DataFile] = field(default_factory=dict)
    deletes: dict[str, list[DataFile]] = field(default_factory=dict)   # data file -> delete files applying
    heavy: set[str] = field(default_factory=set)                       # rewritten for their deletes

    def infos(self) -> list[FileInfo]:
        return [FileInfo(p, int(df.file_size_in_bytes), int(df.record_count),
                         tuple(d.file_path for d in self.deletes.get(p, ())), p in self.heavy)
                for p, df in self.files.items()]


def delete_thresholds(properties: Mapping[str, str]) -> tuple[int, float]:
    """(delete files, ratio of deleted rows) from which a file is rewritten for its deletes."""
    raw_n = properties.get(DELETE_FILE_THRESHOLD_PROPERTY, str(DELETE_FILE_THRESHOLD_DEFAULT)).strip()
    raw_r = properties.get(DELETE_RATIO_THRESHOLD_PROPERTY, str(DELETE_RATIO_THRESHOLD_DEFAULT)).strip()
    if not raw_n.isdigit() or int(raw_n) < 1:
        raise ConfigError(f"table property {DELETE_FILE_THRESHOLD_PROPERTY}: expected a whole number >= 1,"
                          f" got {raw_n!r}")
    try:
        ratio = float(raw_r)
    except ValueError:
        ratio = -1.0
    if not 0 < ratio <= 1:
        raise ConfigError(f"table property {DELETE_RATIO_THRESHOLD_PROPERTY}: expected a ratio in (0, 1],"
                          f" got {raw_r!r}")
    return int(raw_n), ratio


def _heavy(df: DataFile, deletes: list[DataFile], threshold: int, ratio: float) -> bool:
    if not deletes:
        return False
    if len(deletes) >= threshold:
        return True
    known = sum(int(d.record_count) for d in deletes
                if d.content == DataFileContent.POSITION_DELETES and referenced(d) == df.file_path)
    records = int(df.record_count)
    return records > 0 and min(known, records) / records >= ratio


def live_files(table: Table, key: PartitionKey | None = None) -> tuple[int | None, dict[str, PartitionFiles]]:
    """(current snapshot id, {partition text: files}) for the default spec, or one partition of it."""
    snapshot = table.current_snapshot()
    if snapshot is None:
        return None, {}
    meta, spec, schema = table.metadata, table.spec(), table.schema()
    threshold, ratio = delete_thresholds(table.properties)
    expr: BooleanExpression = row_filter(key, spec, schema) if key is not None else AlwaysTrue()
    found = snapshot_files(meta, table.io, snapshot, expr)
    index = DeleteIndex((e for e, _ in found.deletes), unpartitioned_specs(meta))
    out: dict[str, PartitionFiles] = {}
    for entry in found.data:
        df = entry.data_file
        if df.spec_id != spec.spec_id:
            continue
        if key is not None and not key.matches(df.spec_id, df.partition):
            continue
        text = key.text if key is not None else format_partition(spec, schema, df.partition)
        part = out.setdefault(text, PartitionFiles(text))
        part.files[df.file_path] = df
        deletes = index.for_data(entry)
        if deletes:
            part.deletes[df.file_path] = deletes
            if _heavy(df, deletes, threshold, ratio):
                part.heavy.add(df.file_path)
    return snapshot.snapshot_id, out


def refused(table: Table, plan: PartitionPlan, files: PartitionFiles) -> str | None:
    """Why this partition's plan cannot be carried out exactly (equality deletes), or None."""
    limit = max_rows(table.properties)
    for group in plan.groups:
        equality = {d.file_path: d for f in group.inputs for d in files.deletes.get(f.path, ())
                    if d.content == DataFileContent.EQUALITY_DELETES}
        why = refusal(table.schema(), sorted(equality.values(), key=lambda d: d.file_path), limit)
        if why is not None:
            return why
    return None


def screen(table: Table, plan: TablePlan, parts: Mapping[str, PartitionFiles]) -> TablePlan:
    """The plan without the partitions that must be refused, which it lists with their reasons instead."""
    kept, out = [], dict(plan.refused)
    for p in plan.partitions:
        why = refused(table, p, parts[p.partition])
        if why is None:
            kept.append(p)
        else:
            out[p.partition] = why
    return dataclasses.replace(plan, partitions=tuple(kept), refused=tuple(sorted(out.items())))
