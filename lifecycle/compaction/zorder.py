"""Row orderings for a file group: the table's sort order, or a Z-order over chosen columns.

Z-order ranks each column within the group (dense rank, nulls last), scales every rank to one integer range,
interleaves the bits (the first column on the highest bit) and sorts by the result.
"""

from __future__ import annotations

from collections.abc import Sequence

import pyarrow as pa
import pyarrow.compute as pc

TOTAL_BITS = 63


def sort_indices(table: pa.Table, columns: Sequence[str], directions: Sequence[str],
                 nulls: Sequence[str]) -> pa.Array:
    """Indices that order `table` by the columns, each with its own direction and null placement."""
    arrays: list[pa.Array] = []
    names: list[str] = []
    keys: list[tuple[str, str]] = []
    for i, (col, direction, null) in enumerate(zip(columns, directions, nulls, strict=True)):
        values = table.column(col)
        if values.null_count:  # a null-placement key only where there are nulls to place
            arrays.append(pc.is_valid(values))  # False for null: ascending puts nulls first
            names.append(f"n{i}")
            keys.append((f"n{i}", "ascending" if null == "first" else "descending"))
        arrays.append(values)
        names.append(f"v{i}")
        keys.append((f"v{i}", "descending" if direction == "desc" else "ascending"))
    if not arrays:
        return pa.array(range(table.num_rows), pa.int64())
    return pc.sort_indices(pa.table(arrays, names=names), sort_keys=keys)


def scaled_ranks(values: pa.Array | pa.ChunkedArray, bits: int) -> pa.Array:
    """Dense ranks (nulls last) scaled to 0 .. 2**bits - 1, as uint64."""
    ranks = pc.subtract(pc.cast(pc.rank(values, sort_keys="ascending",
                                        tiebreaker="dense"), pa.float64()), 1.0)
    top = pc.max(ranks).as_py() if len(ranks) else 0.0
    scale = ((1 << bits) - 1) / top if top else 0.0
    return pc.cast(pc.floor(pc.multiply(ranks, scale)), pa.uint64())


def interleave(columns: Sequence[pa.Array], bits: int) -> pa.Array:
    """Morton code: column 0 on the highest bit of every bit level."""
    if len(columns) * bits > 64:
        raise ValueError("too many bits to interleave into 64")
    one = pa.scalar(1, pa.uint64())
    z = pc.multiply(columns[0], pa.scalar(0, pa.uint64()))
    for b in range(bits - 1, -1, -1):
        shift = pa.scalar(b, pa.uint64())
        for col in columns:
            z = pc.bit_wise_or(pc.shift_left(z, one), pc.bit_wise_and(pc.shift_right(col, shift), one))
    return z


def zorder_values(table: pa.Table, columns: Sequence[str]) -> pa.Array:
    bits = min(32, TOTAL_BITS // max(len(columns), 1))
    return interleave([scaled_ranks(table.column(c), bits) for c in columns], bits)


def zorder_indices(table: pa.Table, columns: Sequence[str]) -> pa.Array:
    if not columns:
        return pa.array(range(table.num_rows), pa.int64())
    return pc.sort_indices(zorder_values(table, columns))
