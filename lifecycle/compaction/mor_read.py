"""A compaction group's rows with its deletes applied (merge-on-read): what a scan of the base snapshot returns.

`LiveGroup.open` finds the group's inputs and the delete files that apply to them in the plan's base snapshot
(the validation at commit covers any delete added since), reads the position deletes and the equality delete
rows once, and counts each input's live rows exactly, so the group's rows split into its outputs by exact row
ranges as before: `group` is the group with live row counts (fewer outputs if fewer rows remain; none when
every row is deleted). `read(inputs, lo, hi)` is the rewriters' row source: rows [lo, hi) of the live rows in
input order, read through PyIceberg's ArrowScan (field ids, schema evolution, name mapping and position deletes
as a scan applies them), equality deletes applied on top (lifecycle.compaction.mor_equality).

Every data or delete file is charged to the bandwidth limiter, whole, before it is opened.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
from pyiceberg.expressions import AlwaysTrue
from pyiceberg.io.pyarrow import ArrowScan, _read_all_delete_files, schema_to_pyarrow
from pyiceberg.manifest import DataFile, DataFileContent
from pyiceberg.schema import Schema
from pyiceberg.table import FileScanTask, Table

from lifecycle.bandwidth import Limiter
from lifecycle.compaction.mor_equality import EqualityKeys
from lifecycle.compaction.mor_index import DeleteIndex, snapshot_files, unpartitioned_specs
from lifecycle.compaction.planner import FileGroup, FileInfo
from lifecycle.iceberg.partitions import parse_partition, row_filter


@dataclass
class _Input:
    task: FileScanTask                          # the data file and its position deletes
    equality: EqualityKeys | None
    live: int = 0


@dataclass
class LiveGroup:
    group: FileGroup
    _table: Table
    _limiter: Limiter
    _inputs: dict[str, _Input] = field(default_factory=dict)
    _positions: dict[str, list[Any]] = field(default_factory=dict)

    @staticmethod
    def open(table: Table, partition: str, group: FileGroup, base_snapshot_id: int | None,
             limiter: Limiter) -> LiveGroup:
        meta = table.metadata
        base = meta.snapshot_by_id(base_snapshot_id) if base_snapshot_id is not None else None
        if base is None:
            raise ValueError(f"base snapshot {base_snapshot_id} of the group is no longer in the table")
        key = parse_partition(partition, table.spec(), table.schema())
        files = snapshot_files(meta, table.io, base, row_filter(key, table.spec(), table.schema()))
        index = DeleteIndex((e for e, _ in files.deletes), unpartitioned_specs(meta))
        by_path = {e.data_file.file_path: e for e in files.data}
        live = LiveGroup(group, table, limiter)
        keys: dict[frozenset[str], EqualityKeys] = {}
        for info in group.inputs:
            entry = by_path.get(info.path)
            if entry is None:
                raise ValueError(f"input {info.path} is not live in base snapshot {base_snapshot_id}")
            deletes = index.for_data(entry)
            if {d.file_path for d in deletes} != set(info.deletes):
                raise ValueError(f"the deletes of {info.path} in snapshot {base_snapshot_id} differ from the plan's")
            positions = {d for d in deletes if d.content == DataFileContent.POSITION_DELETES}
            equality = [d for d in deletes if d.content == DataFileContent.EQUALITY_DELETES]
            eq = None
            if equality:
                name = frozenset(d.file_path for d in equality)
                if name not in keys:
                    live._charge(equality)
                    keys[name] = EqualityKeys(meta, table.io, equality)
                eq = keys[name] if keys[name].keys else None
            live._inputs[info.path] = _Input(FileScanTask(entry.data_file, positions), eq)
        tasks = [i.task for i in live._inputs.values()]
        live._charge(list({d for t in tasks for d in t.delete_files}))
        live._positions = _read_all_delete_files(table.io, tasks)
        live._count()
        return live

    def _charge(self, files: Sequence[DataFile]) -> None:
        self._limiter.acquire(sum(int(f.file_size_in_bytes) for f in files))

    def _count(self) -> None:
        """Exact live rows per input; the group's inputs carry them and its outputs are clamped to them."""
        for path, inp in self._inputs.items():
            records = int(inp.task.file.record_count)
            if inp.equality is not None:
                inp.live = sum(t.num_rows for t in self._batches(inp, _keys_schema(self._table, inp.equality)))
            elif path in self._positions:
                pos = pa.chunked_array([c for arr in self._positions[path] for c in arr.chunks], type=pa.int64())
                in_range = pc.filter(pos, pc.and_(pc.greater_equal(pos, 0), pc.less(pos, records)))
                inp.live = records - int(pc.count_distinct(in_range).as_py())
            else:
                inp.live = records
        inputs = tuple(dataclasses.replace(f, records=self._inputs[f.path].live) for f in self.group.inputs)
        total = sum(f.records for f in inputs)
        self.group = FileGroup(inputs, min(self.group.output_count, total))

    def _batches(self, inp: _Input, projected: Schema) -> Iterator[pa.Table]:
        """The input's rows (projected) with position deletes (by ArrowScan) and equality deletes applied."""
        scan = ArrowScan(self._table.metadata, self._table.io, projected, AlwaysTrue())
        for batch in scan._record_batches_from_scan_tasks_and_deletes([inp.task], self._positions):
            rows = pa.Table.from_batches([batch])
            if inp.equality is not None:
                gone = inp.equality.deleted(rows)
                if gone is not None:
                    rows = rows.filter(pc.invert(gone))
            if rows.num_rows:
                yield rows

    def read(self, inputs: Sequence[FileInfo], lo: int, hi: int) -> Iterator[pa.Table]:
        """Live rows [lo, hi) of `inputs` (whose `records` are live counts) in order, cast to the table's arrow
        schema with field ids. Inputs outside the range are never opened."""
        target = schema_to_pyarrow(self._table.schema())
        start = 0
        for info in inputs:
            end = start + info.records
            if end > lo and start < hi:
                inp = self._inputs[info.path]
                self._limiter.acquire(int(inp.task.file.file_size_in_bytes))
                seen = 0
                for rows in self._batches(inp, self._table.schema()):
                    first, last = max(lo - start - seen, 0), min(hi - start - seen, rows.num_rows)
                    if first < last:
                        yield (rows if (first, last) == (0, rows.num_rows) else rows.slice(first, last - first)
                               ).cast(target)
                    seen += rows.num_rows
                    if start + seen >= hi:
                        break
                else:
                    if seen != info.records:   # read to its end: exactly the rows counted
                        raise ValueError(f"{info.path}: {seen} live rows read, {info.records} counted")
            start = end
            if start >= hi:
                return


def _keys_schema(table: Table, keys: EqualityKeys) -> Schema:
    """The columns the equality deletes compare (all that counting live rows has to read)."""
    names = {n for k in keys.keys for n in k.column_names}
    return Schema(*[f for f in table.schema().fields if f.name in names])
