"""Z-order of a file group: each column ranked against quantiles
sampled from the group (`Quantiles`: up to 4,096 sorted distinct values per column, nulls last), scales every
rank to one range of RANK_BITS bits, interleaves the bits (the first column on the highest bit: `morton`) and
sorts stably by the result. A row's z-value is a function of the row alone, so a group too large for memory
gets the same z-values in sorted runs that are spilled and merged (lifecycle.compaction.ordered), its
quantiles sampled in a first pass over its files.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from lifecycle.compaction.keys import key_order

TOTAL_BITS = 63


def zorder_indices(table: pa.Table, columns: Sequence[str]) -> pa.Array:
    """Indices ordering `table` along the Z-curve of the columns, ranked against quantiles sampled from the
    table itself (the same z-values a spilled group gets from quantiles sampled across its files)."""
    if not columns:
        return pa.array(np.arange(table.num_rows, dtype=np.int64))
    rate = min(1.0, SAMPLE_ROWS / max(table.num_rows, 1))
    q = Quantiles.of(sample_rows(table, columns, rate, np.random.default_rng(0)), columns)
    return key_order([q.zvalues(table)], ["ascending"], table.num_rows)


# ---- ranks from sampled quantiles, so a row's z-value is a function of the row alone ----

SAMPLE_ROWS = 262_144       # rows sampled per group for the quantiles
RANK_BITS = 13              # bits per column of a z-value: enough for the 4,097 ranks quantiles can give
ZVALUE_BLOCK = 1 << 20       # rows whose z-values are computed at once
SAMPLE_PER_COLUMN = 4_096   # quantiles kept per column: 12 bits of rank, far more than a group's outputs resolve,
                            # and a table that stays in cache (searchsorted 0.17 s vs 0.47 s at 65,536, 4.3 M rows)


def _numeric(values: pa.Array | pa.ChunkedArray) -> np.ndarray:
    """An order-preserving numeric view of a column (nulls filled; callers mask them): numbers and temporal
    values as themselves, strings and binaries by their first 8 bytes (big-endian)."""
    t = values.type
    if pa.types.is_integer(t) or pa.types.is_floating(t) or pa.types.is_boolean(t) or pa.types.is_decimal(t):
        target = pa.float64() if (pa.types.is_floating(t) or pa.types.is_decimal(t)) else pa.int64()
        return np.asarray(pc.fill_null(pc.cast(values, target), 0).to_numpy(zero_copy_only=False))
    if pa.types.is_temporal(t):
        ints = pc.cast(values, pa.int32() if t.bit_width == 32 else pa.int64())
        return np.asarray(pc.fill_null(ints, 0).to_numpy(zero_copy_only=False)).astype(np.int64)
    if pa.types.is_dictionary(t):
        return _numeric(values.dictionary_decode() if isinstance(values, pa.Array) else
                        pa.chunked_array([c.dictionary_decode() for c in values.chunks], t.value_type))
    # strings repeat (kinds, units, names): convert each distinct value once, then gather
    encoded = pc.dictionary_encode(values.combine_chunks() if isinstance(values, pa.ChunkedArray) else values)
    prefixes = _prefix8(encoded.dictionary)
    indices = np.asarray(pc.fill_null(encoded.indices, 0).to_numpy(zero_copy_only=False))
    out = prefixes[indices] if len(prefixes) else np.zeros(len(values), np.uint64)
    if encoded.null_count:
        out[np.asarray(encoded.is_null().to_numpy(zero_copy_only=False))] = 0
    return np.asarray(out, np.uint64)


def _prefix8(values: pa.Array) -> np.ndarray:
    """Each (string or binary) value's first 8 bytes as a big-endian uint64, zero-padded."""
    raw = pc.cast(values, pa.binary()).to_numpy(zero_copy_only=False)
    return np.asarray(np.array(raw, dtype="S8").view(">u8").astype(np.uint64))


def sample_rows(table: pa.Table, columns: Sequence[str], rate: float, rng: np.random.Generator) -> pa.Table:
    """A uniform sample of the z-order columns of `table` (each row kept with probability `rate`)."""
    keep = rng.random(table.num_rows) < rate
    return table.select(list(columns)).filter(pa.array(keep))


@dataclass(frozen=True)
class Quantiles:
    """Per column, the sorted distinct values of a sample: a value's rank is its position among them."""

    columns: tuple[str, ...]
    bounds: tuple[np.ndarray, ...]

    @staticmethod
    def of(sample: pa.Table, columns: Sequence[str]) -> Quantiles:
        bounds = []
        for c in columns:
            col = sample.column(c)
            valid = pc.drop_null(col)
            b = np.unique(_numeric(valid)) if len(valid) else np.zeros(0)
            if len(b) > SAMPLE_PER_COLUMN:   # keep evenly spaced quantiles
                b = b[np.linspace(0, len(b) - 1, SAMPLE_PER_COLUMN).astype(np.int64)]
            bounds.append(b)
        return Quantiles(tuple(columns), tuple(bounds))

    def zvalues(self, table: pa.Table) -> pa.Array:
        """Z-values (uint64) of the rows: each column ranked against its quantiles (nulls last), interleaved.
        Computed ZVALUE_BLOCK rows at a time, so the temporaries stay small beside the rows themselves."""
        z = np.zeros(table.num_rows, np.uint64)
        if self.columns:
            for start in range(0, table.num_rows, ZVALUE_BLOCK):
                block = table.slice(start, ZVALUE_BLOCK)
                z[start:start + block.num_rows] = self._block(block)
        return pa.array(z)

    def _block(self, table: pa.Table) -> np.ndarray:
        bits = min(RANK_BITS, TOTAL_BITS // len(self.columns))
        top = (1 << bits) - 1
        scaled = []
        for c, b in zip(self.columns, self.bounds, strict=True):
            col = table.column(c)
            r = np.searchsorted(b, _numeric(col), side="left").astype(np.uint64)   # 0 .. len(b)
            r *= np.uint64(top)   # integer scaling, in place: < 2**(12 + 16) before the division
            r //= np.uint64(max(len(b), 1))
            if col.null_count:
                r[np.asarray(pc.is_null(col).to_numpy(zero_copy_only=False))] = top
            scaled.append(r)
        return morton(scaled, bits)


def morton(columns: Sequence[np.ndarray], bits: int) -> np.ndarray:
    """The Morton code of n columns of `bits` bits: bit b of column i lands on bit b * n + (n - 1 - i), so
    column 0 holds the highest bit of every level. Each column's bits are spread a byte at a time through a
    256-entry table (4 lookups, not one shift pass per bit: 1.0 s against 2.4 s for 8.7 M rows of two)."""
    n = len(columns)
    spread = np.zeros(256, np.uint64)
    for b in range(8):
        spread |= ((np.arange(256, dtype=np.uint64) >> np.uint64(b)) & np.uint64(1)) << np.uint64(b * n)
    z = np.zeros(len(columns[0]) if n else 0, np.uint64)
    mask = np.uint64((1 << bits) - 1)
    for i, col in enumerate(columns):
        col = col & mask
        for byte in range((bits + 7) // 8):
            part = spread[((col >> np.uint64(8 * byte)) & np.uint64(255)).astype(np.intp)]
            z |= part << np.uint64(8 * byte * n + (n - 1 - i))
    return z
