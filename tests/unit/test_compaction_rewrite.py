"""Orderings (sort, Z-order) and the split writer, on local files only."""

from __future__ import annotations

import random
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
from pyiceberg.io.pyarrow import PyArrowFileIO

from lifecycle.bandwidth import TokenBucket
from lifecycle.compaction.planner import BINPACK, ZORDER, Strategy
from lifecycle.compaction.rewrite import SplitWriter, rewrite_group
from lifecycle.compaction.zorder import interleave, scaled_ranks, sort_indices, zorder_indices

SCHEMA = pa.schema([("k", pa.int64()), ("s", pa.string())])


def test_sort_indices_per_column_direction_and_nulls() -> None:
    t = pa.table({"a": [2, None, 1, 2, None], "b": ["x", "y", None, "z", "w"]})
    out = t.take(sort_indices(t, ["a", "b"], ["desc", "asc"], ["first", "last"])).to_pylist()
    assert [(r["a"], r["b"]) for r in out] == [(None, "w"), (None, "y"), (2, "x"), (2, "z"), (1, None)]
    out = t.take(sort_indices(t, ["a"], ["asc"], ["last"]))["a"].to_pylist()
    assert out == [1, 2, 2, None, None]


def test_interleave_puts_first_column_on_the_high_bit() -> None:
    a = pa.array([0b10, 0b01], pa.uint64())
    b = pa.array([0b01, 0b10], pa.uint64())
    assert interleave([a, b], 2).to_pylist() == [0b1001, 0b0110]
    assert scaled_ranks(pa.array([5, 7, 5, None]), 3).to_pylist() == [0, 3, 0, 7]


def test_zorder_clusters_both_columns() -> None:
    rng = random.Random(3)
    n = 4096
    t = pa.table({"x": [rng.randrange(10**6) for _ in range(n)], "y": [f"k{rng.randrange(64):02d}" for _ in range(n)]})
    t = t.take(zorder_indices(t, ["x", "y"]))
    yr = pc.rank(t["y"], sort_keys="ascending", tiebreaker="dense")
    for col in (t["x"], yr):
        lo, hi = pc.min(col).as_py(), pc.max(col).as_py()
        spans = [(pc.max(col.slice(i, n // 64)).as_py() - pc.min(col.slice(i, n // 64)).as_py()) / (hi - lo)
                 for i in range(0, n, n // 64)]
        assert sum(spans) / len(spans) < 0.30


def _inputs(tmp_path: Path, n_files: int, rows: int) -> list[str]:
    rng = random.Random(1)
    paths = []
    for i in range(n_files):
        keys = [rng.randrange(1000) for _ in range(rows)]
        t = pa.table({"k": keys, "s": [f"v{rng.randrange(9)}" for _ in range(rows)]}, schema=SCHEMA)
        p = str(tmp_path / f"in-{i}.parquet")
        pq.write_table(t, p, row_group_size=max(1, rows // 3))
        paths.append(p)
    return paths


@pytest.mark.parametrize("k", [1, 3, 7])
def test_split_writer_makes_exactly_k_files_with_every_row(tmp_path: Path, k: int) -> None:
    io = PyArrowFileIO()
    inputs = _inputs(tmp_path, 5, 101)
    bucket = TokenBucket(10**12)
    outs = [str(tmp_path / f"out-{i}.parquet") for i in range(k)]
    written: list[int] = []
    writer = SplitWriter(io, outs, 505, SCHEMA, bucket, row_group_rows=64, on_written=lambda i, p, b: written.append(i))
    rewrite_group(io, inputs, 505, Strategy(BINPACK), SCHEMA, writer, bucket)
    assert written == list(range(k))
    counts = [pq.ParquetFile(p).metadata.num_rows for p in outs]
    assert sum(counts) == 505 and max(counts) - min(counts) <= 1
    got = pa.concat_tables([pq.read_table(p) for p in outs])
    want = pa.concat_tables([pq.read_table(p) for p in inputs])
    assert got.equals(want)  # bin-pack keeps the input order
    assert pq.ParquetFile(outs[0]).metadata.row_group(0).column(0).compression == "ZSTD"
    in_bytes = sum(Path(p).stat().st_size for p in inputs)
    assert bucket.charged_bytes >= writer.bytes_out + in_bytes * 0.5
    assert writer.bytes_out == sum(Path(p).stat().st_size for p in outs)


def test_zorder_rewrite_keeps_rows(tmp_path: Path) -> None:
    io = PyArrowFileIO()
    inputs = _inputs(tmp_path, 3, 50)
    outs = [str(tmp_path / f"z-{i}.parquet") for i in range(4)]
    bucket = TokenBucket(10**12)
    writer = SplitWriter(io, outs, 150, SCHEMA, bucket, row_group_rows=1000)
    rewrite_group(io, inputs, 150, Strategy(ZORDER, ("k", "s")), SCHEMA, writer, bucket)
    got = pa.concat_tables([pq.read_table(p) for p in outs]).sort_by([("k", "ascending"), ("s", "ascending")])
    want = pa.concat_tables([pq.read_table(p) for p in inputs]).sort_by([("k", "ascending"), ("s", "ascending")])
    assert got.equals(want)


def test_split_writer_refuses_a_row_count_mismatch(tmp_path: Path) -> None:
    io = PyArrowFileIO()
    inputs = _inputs(tmp_path, 2, 10)
    bucket = TokenBucket(10**12)
    writer = SplitWriter(io, [str(tmp_path / "o.parquet")], 25, SCHEMA, bucket, row_group_rows=8)
    with pytest.raises(ValueError, match="expected 25 rows"):
        rewrite_group(io, inputs, 25, Strategy(BINPACK), SCHEMA, writer, bucket)
    with pytest.raises(ValueError, match="cannot split"):
        SplitWriter(io, ["a", "b", "c"], 2, SCHEMA, bucket, row_group_rows=8)
