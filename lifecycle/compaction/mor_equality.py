"""Equality deletes, applied exactly or refused.

A row is deleted by an equality delete file when its values of the file's `equality_ids` columns equal one of
the file's rows, null matching null (Iceberg's rule). The delete rows are held in memory, so a partition whose
applicable equality deletes hold more than `lifecycle.compaction.equality-delete-max-rows` rows is refused, as
is one whose delete columns cannot be compared exactly here: floating point (NaN and -0.0), nested or dropped
columns, files that are not Parquet. A refused partition is not compacted; the others are.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
from pyiceberg.expressions import AlwaysTrue
from pyiceberg.io.pyarrow import ArrowScan
from pyiceberg.manifest import DataFile, FileFormat
from pyiceberg.schema import Schema
from pyiceberg.table import FileScanTask
from pyiceberg.table.metadata import TableMetadata
from pyiceberg.types import DoubleType, FloatType, PrimitiveType

from lifecycle.errors import ConfigError

MAX_ROWS_PROPERTY = "lifecycle.compaction.equality-delete-max-rows"
DEFAULT_MAX_ROWS = 1_000_000


def max_rows(properties: Mapping[str, str]) -> int:
    raw = properties.get(MAX_ROWS_PROPERTY)
    if raw is None:
        return DEFAULT_MAX_ROWS
    if not raw.strip().isdigit():
        raise ConfigError(f"table property {MAX_ROWS_PROPERTY}: expected a whole number of rows, got {raw!r}")
    return int(raw)


def refusal(schema: Schema, deletes: Iterable[DataFile], limit: int) -> str | None:
    """Why these equality deletes cannot be applied here, or None when they can."""
    top = {f.field_id for f in schema.fields}
    rows = 0
    for d in deletes:
        name = d.file_path.rsplit("/", 1)[-1]
        ids = list(d.equality_ids or ())
        if not ids:
            return f"equality delete file {name} names no equality columns"
        if d.file_format != FileFormat.PARQUET:
            return f"equality delete file {name} is {d.file_format.name}, only Parquet is read"
        for fid in ids:
            if fid not in top:
                return (f"equality delete file {name} compares column id {fid}, which is nested or no longer in"
                        " the table schema")
            f = schema.find_field(fid)
            if not isinstance(f.field_type, PrimitiveType) or isinstance(f.field_type, FloatType | DoubleType):
                return (f"equality deletes on column {f.name!r} ({f.field_type}) cannot be applied exactly"
                        " (floating point or nested)")
        rows += int(d.record_count)
    if rows > limit:
        return (f"{rows} equality-delete rows apply, more than {MAX_ROWS_PROPERTY}={limit} held in memory;"
                " raise the property or rewrite the deletes with the writer's engine")
    return None


class EqualityKeys:
    """The delete rows of some equality delete files, by column set; `deleted(rows)` marks matching rows."""

    def __init__(self, metadata: TableMetadata, io: Any, deletes: Sequence[DataFile]) -> None:
        schema = metadata.schema()
        by_ids: dict[tuple[int, ...], list[DataFile]] = {}
        for d in deletes:
            by_ids.setdefault(tuple(sorted(d.equality_ids or ())), []).append(d)
        self.keys: list[pa.Table] = []
        for ids, files in sorted(by_ids.items()):
            projected = Schema(*[schema.find_field(i) for i in ids])
            scan = ArrowScan(metadata, io, projected, AlwaysTrue())
            rows = scan.to_table([FileScanTask(f) for f in files])
            if rows.num_rows:
                self.keys.append(rows)

    def deleted(self, rows: pa.Table) -> pa.ChunkedArray | pa.Array | None:
        """True for each row some delete matches; None when none can."""
        mask: Any = None
        for keys in self.keys:
            hit = _matches(rows, keys)
            mask = hit if mask is None else pc.or_(mask, hit)
        return mask


def _matches(rows: pa.Table, keys: pa.Table) -> Any:
    names = keys.column_names
    if len(names) == 1:
        col = rows[names[0]]
        return pc.is_in(col, value_set=keys[names[0]].combine_chunks().cast(col.type), skip_nulls=False)
    left, right = _null_safe(rows, names, keys)
    left = left.append_column("__row", pa.array(range(rows.num_rows), pa.int64()))
    hit = left.join(right, keys=right.column_names, join_type="left semi")["__row"]
    return pc.is_in(pa.array(range(rows.num_rows), pa.int64()), value_set=hit.combine_chunks())


def _null_safe(rows: pa.Table, names: Sequence[str], keys: pa.Table) -> tuple[pa.Table, pa.Table]:
    """Both sides recoded so that a plain equality join treats null as equal to null: per column an
    is-null flag and the value with nulls replaced by a value of the column (any: the flag decides)."""
    left: dict[str, Any] = {}
    right: dict[str, Any] = {}
    for name in names:
        lcol, rcol = rows[name], keys[name].cast(rows[name].type)
        left[f"{name}\x00null"], right[f"{name}\x00null"] = pc.is_null(lcol), pc.is_null(rcol)
        present = pc.drop_null(pa.chunked_array([*lcol.chunks, *rcol.chunks], type=lcol.type))
        if len(present):
            fill = present[0]
            left[f"{name}\x00value"] = pc.coalesce(lcol, fill)
            right[f"{name}\x00value"] = pc.coalesce(rcol, fill)
    return pa.table(left), pa.table(right)
