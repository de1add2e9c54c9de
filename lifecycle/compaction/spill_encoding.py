"""Spilled runs keep repetitive text columns dictionary-encoded, decoded again as the merge emits rows.

A take (the spill's sort, the merge's steps) costs about ten times more on a string column than on a number
column (narrow rows, 1.9 M rows: ~0.09 s per string column, ~0.01 s per int64/double, 0.016 s for the
dictionary-encoded string): every take copies the strings' bytes. Columns whose values repeat (mission, kind,
unit, status) are therefore dictionary-encoded before a run is sorted, so both takes move int32 indices, the
runs on disk shrink, and the merged rows are cast back to the column's own type before they are written.
Sort keys are encoded too: wherever rows are sorted, a text key is sorted through the ranks of its dictionary
(lifecycle.compaction.keys.text_ranks). The decision is taken once per group from the first chunk, since
every run must share one schema for the merge.
"""

from __future__ import annotations

from collections.abc import Sequence

import pyarrow as pa
import pyarrow.compute as pc

MAX_DISTINCT_SHARE = 8     # a column repeats when it has at most one distinct value in 8 rows



def is_text(t: pa.DataType) -> bool:
    """A text or binary type (or a dictionary of one)."""
    if pa.types.is_dictionary(t):
        t = t.value_type
    return bool(pa.types.is_string(t) or pa.types.is_large_string(t) or pa.types.is_binary(t)
                or pa.types.is_large_binary(t))


def candidates(schema: pa.Schema) -> list[str]:
    """Text and binary columns."""
    return [f.name for f in schema if is_text(f.type)]


def repetitive(chunk: pa.Table, names: Sequence[str]) -> list[str]:
    """Of `names`, the columns of `chunk` whose values repeat enough to be worth a dictionary (here, in the
    runs; lifecycle.compaction.outputs, in the parquet outputs)."""
    limit = max(chunk.num_rows // MAX_DISTINCT_SHARE, 1)
    return [n for n in names if n in chunk.column_names and pc.count_distinct(chunk.column(n)).as_py() <= limit]


def encoded(chunk: pa.Table, names: Sequence[str]) -> pa.Table:
    for name in names:
        i = chunk.schema.get_field_index(name)
        chunk = chunk.set_column(i, name, pc.dictionary_encode(chunk.column(i)))
    return chunk


def decoded(table: pa.Table, names: Sequence[str]) -> pa.Table:
    for name in names:
        i = table.schema.get_field_index(name)
        if i >= 0 and pa.types.is_dictionary(table.schema.field(i).type):
            column = table.column(i)
            table = table.set_column(i, name, column.cast(column.type.value_type))
    return table
