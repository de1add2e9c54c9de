"""Sort keys as integers, ordered by one numpy sort wherever they allow it.

A sort orders rows by columns, each with its direction and null placement (`sort_keys`); ties keep their
order (every sort here is stable). A text key whose values repeat is replaced by the dense ranks of its
dictionary (`text_ranks`). When every key is then an integer, a timestamp, a boolean or ranked text without
nulls, and their ranges fit 64 bits together, the keys are packed into one unsigned integer per row
(`packed_keys`: each key's offset from its minimum, or from its maximum when descending, in its own bits, the
first key highest): ordering rows is then one integer sort. With the rows' positions packed below the keys
(when they fit too) it is numpy's `sort` of plain integers, several times faster than any argsort (4.3 M
z-values: 0.29 s against 1.30 s), else numpy's stable argsort, which merges already sorted runs in
O(n log k) (lifecycle.compaction.ordered). Anything else goes to pyarrow's stable multi-key sort.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from lifecycle.compaction.spill_encoding import MAX_DISTINCT_SHARE, is_text  # text that repeats is ranked

Keys = tuple[list[pa.Array | pa.ChunkedArray], list[str]]   # key arrays, their orders ("ascending"/"descending")
KEY_BITS = 62     # a single key wider than this is not packed (its offset could overflow int64 arithmetic)


def sort_keys(table: pa.Table, columns: Sequence[str], directions: Sequence[str],
              nulls: Sequence[str]) -> Keys:
    """The key arrays that order `table` by the columns (each with its own direction and null placement),
    with their orders ("ascending"/"descending")."""
    arrays: list[pa.Array | pa.ChunkedArray] = []
    orders: list[str] = []
    for col, direction, null in zip(columns, directions, nulls, strict=True):
        values = table.column(col)
        if values.null_count:  # a null-placement key only where there are nulls to place
            arrays.append(pc.is_valid(values))  # False for null: ascending puts nulls first
            orders.append("ascending" if null == "first" else "descending")
        ranks = text_ranks(values) if is_text(values.type) else None
        arrays.append(values if ranks is None else ranks)
        orders.append("descending" if direction == "desc" else "ascending")
    return arrays, orders


def text_ranks(values: pa.Array | pa.ChunkedArray) -> pa.Array | None:
    """The dense ranks (int32, nulls as 0: callers place nulls with their own key) of a text column whose
    values repeat (or that is dictionary-encoded), or None when they mostly do not. Sorting ranks is an
    integer sort; sorting the strings compares bytes (1.6 s against 2.4 s for 2.6 M narrow rows on
    (sensor_kind, payload_id), the ranks included). Ranks order rows only among the rows of `values`: they
    are computed wherever rows are sorted."""
    arr = values.combine_chunks() if isinstance(values, pa.ChunkedArray) else values
    if pa.types.is_dictionary(arr.type):   # already encoded (a spilled run's column): always ranked
        enc = arr
    else:
        enc = pc.dictionary_encode(arr)
        if len(enc.dictionary) > max(16, len(arr) // MAX_DISTINCT_SHARE):
            return None
    dense = np.asarray(pc.rank(enc.dictionary, sort_keys="ascending", tiebreaker="dense")).astype(np.int32) - 1
    indices = np.asarray(pc.fill_null(enc.indices, 0).to_numpy(zero_copy_only=False))
    return pa.array(dense[indices] if len(dense) else np.zeros(len(arr), np.int32))


def sort_indices(table: pa.Table, columns: Sequence[str], directions: Sequence[str],
                 nulls: Sequence[str]) -> pa.Array:
    """Indices that order `table` by the columns, each with its own direction and null placement."""
    return key_order(*sort_keys(table, columns, directions, nulls), table.num_rows)


def key_order(arrays: Sequence[pa.Array | pa.ChunkedArray], orders: Sequence[str], rows: int) -> pa.Array:
    """Indices ordering `rows` rows stably (ties keep their order) by key arrays, each ascending or descending."""
    if not arrays:
        return pa.array(np.arange(rows, dtype=np.int64))
    packed = packed_keys(arrays, orders)
    if packed is not None:
        return pa.array(packed_order(*packed))
    names = [f"k{i}" for i in range(len(arrays))]
    return pc.sort_indices(pa.table(list(arrays), names=names), sort_keys=list(zip(names, orders, strict=True)))


def integer_key(values: pa.Array | pa.ChunkedArray) -> np.ndarray | None:
    """An integer, timestamp or boolean key without nulls as a numpy array; None for anything else."""
    if values.null_count:
        return None
    arr = values.combine_chunks() if isinstance(values, pa.ChunkedArray) else values
    if pa.types.is_timestamp(arr.type) or pa.types.is_duration(arr.type):
        arr = arr.view(pa.int64())
    if pa.types.is_boolean(arr.type):
        return np.asarray(arr.to_numpy(zero_copy_only=False), np.uint8)
    return np.asarray(arr) if pa.types.is_integer(arr.type) else None


def packed_keys(arrays: Sequence[pa.Array | pa.ChunkedArray], orders: Sequence[str]) -> tuple[np.ndarray, int] | None:
    """The keys packed into one uint64 per row that orders like them, and the bits it uses; None when a key is
    not an integer-like key without nulls or the keys' ranges need more than 64 bits together."""
    parts = []
    total = 0
    for values, order in zip(arrays, orders, strict=True):
        v = integer_key(values)
        if v is None:
            return None
        lo, hi = (int(v.min()), int(v.max())) if len(v) else (0, 0)
        bits = (hi - lo).bit_length()
        total += bits
        if bits > KEY_BITS or total > 64:
            return None
        parts.append((v, lo, hi, bits, order))
    packed = np.zeros(len(parts[0][0]) if parts else 0, np.uint64)
    for v, lo, hi, bits, order in parts:
        offset = (v - v.dtype.type(lo)) if order == "ascending" else (v.dtype.type(hi) - v)
        packed <<= np.uint64(bits)
        packed |= offset.astype(np.uint64)
    return packed, total


def packed_order(packed: np.ndarray, bits: int) -> np.ndarray:
    """The stable ascending order of `packed` (keys using `bits` bits): one plain sort of (key, position)
    packed together when both fit 64 bits, else a stable argsort."""
    n = len(packed)
    shift = max(1, (n - 1).bit_length())
    if bits + shift > 64:
        return np.argsort(packed, kind="stable")
    both = packed << np.uint64(shift)
    both |= np.arange(n, dtype=np.uint64)
    both.sort()
    both &= np.uint64((1 << shift) - 1)
    order: np.ndarray = both.astype(np.int64)
    return order


def merge_order(arrays: Sequence[pa.Array | pa.ChunkedArray], orders: Sequence[str], rows: int) -> np.ndarray:
    """`key_order` of rows made of sorted runs one after another: packed keys are merged by numpy's stable
    argsort (timsort finds the runs: 0.06 s for two runs of 1.3 M rows, against 0.8 s to sort them)."""
    packed = packed_keys(arrays, orders) if arrays else None
    if packed is not None:
        return np.argsort(packed[0], kind="stable")
    return np.asarray(key_order(arrays, orders, rows)).astype(np.int64)
