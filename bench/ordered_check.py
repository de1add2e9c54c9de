"""Checks for bench/compaction.py --verify, streaming (one row group at a time, whatever the data size).

rows_fingerprint: the row count and an order-independent 64-bit sum of per-row hashes over every column
(numbers by their bits, strings by a hash of their value): equal for inputs and outputs iff (with
overwhelming probability) the same rows are there, each as many times. The narrow data's `seq` column is also
checked to hold every id 0..N-1 exactly once.
sort_violations: adjacent pairs out of (sensor_kind, payload_id) order across the outputs, in output order.
mean_spans: per output file, the span of each Z-order column (strings by dense rank) over its full range.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

MASK = (1 << 64) - 1


def _batches(paths: Sequence[str], columns: list[str] | None = None) -> Iterator[pa.Table]:
    for path in paths:
        pf = pq.ParquetFile(path.removeprefix("file://"))
        for i in range(pf.metadata.num_row_groups):
            yield pf.read_row_group(i, columns=columns)


def _mix(x: np.ndarray) -> np.ndarray:
    x = x.astype(np.uint64, copy=True)
    with np.errstate(over="ignore"):
        x ^= x >> np.uint64(33)
        x *= np.uint64(0xFF51AFD7ED558CCD)
        x ^= x >> np.uint64(33)
        x *= np.uint64(0xC4CEB9FE1A85EC53)
        x ^= x >> np.uint64(33)
    return x


def _column_bits(col: pa.ChunkedArray) -> np.ndarray:
    t = col.type
    if pa.types.is_string(t) or pa.types.is_large_string(t):
        enc = pc.dictionary_encode(col).combine_chunks()
        words = np.array([int.from_bytes(hashlib.blake2b(str(v).encode(), digest_size=8).digest(), "little")
                          for v in enc.dictionary.to_pylist()] or [0], dtype=np.uint64)
        return words[np.asarray(enc.indices.to_numpy(zero_copy_only=False))]
    if pa.types.is_timestamp(t):
        col = pc.cast(col, pa.int64())
    values = np.asarray(col.to_numpy())
    return values.view(np.uint64) if values.dtype.itemsize == 8 else values.astype(np.int64).view(np.uint64)


def rows_fingerprint(paths: Sequence[str], rows_expected: int | None = None) -> dict[str, Any]:
    total, rows = 0, 0
    seen = np.zeros(rows_expected or 0, dtype=bool)
    dup = 0
    for t in _batches(paths):
        h = np.zeros(t.num_rows, dtype=np.uint64)
        with np.errstate(over="ignore"):
            for i, name in enumerate(t.column_names):
                h += _mix(_column_bits(t.column(name)) + np.uint64(i * 0x9E3779B97F4A7C15 & MASK))
        total = (total + int(h.sum(dtype=np.uint64))) & MASK
        rows += t.num_rows
        if rows_expected and "seq" in t.column_names:
            ids = np.asarray(t.column("seq").to_numpy())
            dup += int(seen[ids].sum())
            seen[ids] = True
    out: dict[str, Any] = {"rows": rows, "checksum": f"{total:016x}"}
    if rows_expected:
        out["seq_each_once"] = bool(dup == 0 and seen.all())
    return out


def sort_violations(paths: Sequence[str]) -> int:
    bad = 0
    prev: pa.Table | None = None
    for t in _batches(paths, ["sensor_kind", "payload_id"]):
        if prev is not None:
            t = pa.concat_tables([prev, t])
        k, p = t.column("sensor_kind").combine_chunks(), t.column("payload_id").combine_chunks()
        a, b = k.slice(0, len(k) - 1), k.slice(1)
        ok = pc.or_(pc.less(a, b), pc.and_(pc.equal(a, b), pc.less_equal(p.slice(0, len(p) - 1), p.slice(1))))
        bad += int(pc.sum(pc.invert(ok)).as_py() or 0)
        prev = t.slice(t.num_rows - 1)
    return bad


def mean_spans(paths: Sequence[str], columns: Sequence[str]) -> dict[str, float]:
    ranges: dict[str, list[tuple[Any, Any]]] = {c: [] for c in columns}
    distinct: dict[str, set[Any]] = {c: set() for c in columns}
    for path in paths:
        t = pq.read_table(path.removeprefix("file://"), columns=list(columns))
        for c in columns:
            ranges[c].append((pc.min(t[c]).as_py(), pc.max(t[c]).as_py()))
            if pa.types.is_string(t[c].type) or pa.types.is_large_string(t[c].type):
                distinct[c] |= set(pc.unique(t[c]).to_pylist())
    out = {}
    for c, rs in ranges.items():
        if isinstance(rs[0][0], str):   # strings by dense rank among the values the outputs hold
            values = sorted(distinct[c])
            rank = {v: i for i, v in enumerate(values)}
            rs = [(rank[lo], rank[hi]) for lo, hi in rs]
            top = len(values) - 1
            lo_all = 0
        else:
            lo_all, top = min(r[0] for r in rs), max(r[1] for r in rs)
        out[c] = sum((hi - lo) / (top - lo_all) for lo, hi in rs) / len(rs)
    return out
