"""Orderings (sort, Z-order) and the rewriters, on local files only."""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
from pyiceberg.io.pyarrow import PyArrowFileIO

from lifecycle.bandwidth import TokenBucket
from lifecycle.compaction.keys import (
    key_order,
    merge_order,
    packed_keys,
    packed_order,
    sort_indices,
    sort_keys,
    text_ranks,
)
from lifecycle.compaction.planner import BINPACK, SORT, ZORDER, FileInfo, Strategy
from lifecycle.compaction.rewrite import OutputOptions, compaction_threads, read_rows, rewrite_group, split_bounds
from lifecycle.compaction.zorder import morton, zorder_indices
from lifecycle.errors import ConfigError

SCHEMA = pa.schema([("k", pa.int64()), ("s", pa.string())])


def test_sort_indices_per_column_direction_and_nulls() -> None:
    t = pa.table({"a": [2, None, 1, 2, None], "b": ["x", "y", None, "z", "w"]})
    out = t.take(sort_indices(t, ["a", "b"], ["desc", "asc"], ["first", "last"])).to_pylist()
    assert [(r["a"], r["b"]) for r in out] == [(None, "w"), (None, "y"), (2, "x"), (2, "z"), (1, None)]
    out = t.take(sort_indices(t, ["a"], ["asc"], ["last"]))["a"].to_pylist()
    assert out == [1, 2, 2, None, None]


def test_interleave_puts_first_column_on_the_high_bit() -> None:
    a = np.array([0b10, 0b01], np.uint64)
    b = np.array([0b01, 0b10], np.uint64)
    assert morton([a, b], 2).tolist() == [0b1001, 0b0110]


def test_a_repetitive_text_key_sorts_by_the_dense_ranks_of_its_values() -> None:
    words = pa.array(["m", "a", "zz", "a", "", "m", "b", None] * 3)
    dense = pc.subtract(pc.rank(words, sort_keys="ascending", tiebreaker="dense"), 1).to_pylist()
    ranks = text_ranks(words)
    assert ranks is not None
    assert [r for r, w in zip(ranks.to_pylist(), words.to_pylist(), strict=True) if w is not None] == \
        [d for d, w in zip(dense, words.to_pylist(), strict=True) if w is not None]
    assert text_ranks(words.dictionary_encode()) == ranks
    assert text_ranks(pa.array([f"id-{i}" for i in range(100)])) is None   # distinct values: sorted as they are


@pytest.mark.parametrize("values", [
    np.array([5, -3, 5, 0, -3, 2**40, 7, 5], np.int64),
    np.random.default_rng(1).integers(-1000, 1000, 50_000),
    np.random.default_rng(2).integers(0, 2**40, 50_000).astype(np.uint64),
], ids=["small", "negative-and-repeated", "wide"])
def test_an_integer_key_is_ordered_stably_by_one_packed_sort(values: np.ndarray) -> None:
    packed = packed_keys([pa.array(values)], ["ascending"])
    assert packed is not None
    want = np.argsort(values, kind="stable").tolist()
    assert packed_order(*packed).tolist() == want
    stamps = pa.array(values.astype(np.int64), pa.int64()).cast(pa.timestamp("us"))
    assert key_order([stamps], ["ascending"], len(values)).to_pylist() == want


def test_several_keys_pack_into_one_integer_in_their_directions() -> None:
    rng = np.random.default_rng(5)
    n = 20_000
    t = pa.table({"kind": np.array(["b", "a", "c"])[rng.integers(0, 3, n)], "id": rng.integers(-500, 500, n),
                  "ts": pa.array(rng.integers(0, 10**6, n), pa.timestamp("us")), "ok": rng.random(n) < 0.5})
    columns, directions = ("kind", "id", "ok", "ts"), ("asc", "desc", "asc", "desc")
    arrays, orders = sort_keys(t, columns, directions, ("last",) * 4)
    assert packed_keys(arrays, orders) is not None            # 2 + 10 + 1 + 20 bits
    names = [f"k{i}" for i in range(4)]
    want = pc.sort_indices(t.select(list(columns)).rename_columns(names),
                           sort_keys=list(zip(names, orders, strict=True))).to_pylist()
    assert sort_indices(t, columns, directions, ("last",) * 4).to_pylist() == want
    runs = t.take(pa.concat_arrays([sort_indices(t.slice(0, n // 2), columns, directions, ("last",) * 4),
                                    pc.add(sort_indices(t.slice(n // 2), columns, directions, ("last",) * 4),
                                           n // 2)]))
    merged = merge_order(*sort_keys(runs, columns, directions, ("last",) * 4), n)
    assert runs.take(pa.array(merged)).equals(runs.take(sort_indices(runs, columns, directions, ("last",) * 4)))


def test_keys_that_do_not_pack_go_to_the_general_sort() -> None:
    full = pa.array([2**62, -(2**62), 0, 1], pa.int64())           # a range of 63 bits
    assert packed_keys([full], ["ascending"]) is None
    assert packed_keys([pa.array([1, None, 0])], ["ascending"]) is None
    assert packed_keys([pa.array([0.5, 0.25])], ["ascending"]) is None
    wide = pa.array([2**20, 0, 5], pa.int64())
    assert packed_keys([wide, wide], ["ascending", "ascending"]) is not None
    assert packed_keys([wide, wide, pa.array([2**30, 0, 1])], ["ascending"] * 3) is None   # 21 + 21 + 31 bits
    assert key_order([full], ["ascending"], 4).to_pylist() == [1, 2, 3, 0]
    assert key_order([pa.array([1, None, 0])], ["ascending"], 3).to_pylist() == [2, 0, 1]


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


def _inputs(tmp_path: Path, n_files: int, rows: int) -> list[FileInfo]:
    rng = random.Random(1)
    infos = []
    for i in range(n_files):
        keys = [rng.randrange(1000) for _ in range(rows)]
        t = pa.table({"k": keys, "s": [f"v{rng.randrange(9)}" for _ in range(rows)]}, schema=SCHEMA)
        p = str(tmp_path / f"in-{i}.parquet")
        pq.write_table(t, p, row_group_size=max(1, rows // 3))
        infos.append(FileInfo(p, Path(p).stat().st_size, rows))
    return infos


def _read_all(paths: list[str]) -> pa.Table:
    return pa.concat_tables([pq.read_table(p) for p in paths])


@pytest.mark.parametrize(("k", "threads"), [(1, 1), (3, 1), (7, 1), (3, 2), (7, 4)])
def test_bin_pack_makes_exactly_k_files_with_every_row_in_input_order(tmp_path: Path, k: int, threads: int) -> None:
    io = PyArrowFileIO()
    inputs = _inputs(tmp_path, 5, 101)
    bucket = TokenBucket(10**12)
    outs = [str(tmp_path / f"out-{i}.parquet") for i in range(k)]
    written: list[tuple[int, int]] = []
    total = rewrite_group(io, inputs, outs, Strategy(BINPACK), OutputOptions(SCHEMA, row_group_rows=64), bucket,
                          threads=threads, on_written=lambda i, p, b: written.append((i, b)))
    assert sorted(i for i, _ in written) == list(range(k))            # each output reported once, when complete
    assert [b for _, b in written] == sorted(b for _, b in written) and written[-1][1] == total
    counts = [pq.ParquetFile(p).metadata.num_rows for p in outs]
    assert sum(counts) == 505 and max(counts) - min(counts) <= 1
    assert _read_all(outs).equals(_read_all([f.path for f in inputs]))   # bin-pack keeps the input order
    assert pq.ParquetFile(outs[0]).metadata.row_group(0).column(0).compression == "ZSTD"
    in_bytes = sum(f.size for f in inputs)
    assert bucket.charged_bytes >= total + in_bytes * 0.5
    assert total == sum(Path(p).stat().st_size for p in outs)


def test_bin_pack_output_reads_only_the_row_groups_in_its_range(tmp_path: Path) -> None:
    io = PyArrowFileIO()
    inputs = _inputs(tmp_path, 4, 90)           # 4 files x 3 row groups of 30 rows
    bucket = TokenBucket(10**12)
    rows = list(read_rows(io, inputs, 100, 200, SCHEMA, bucket))
    assert sum(t.num_rows for t in rows) == 100
    want = _read_all([f.path for f in inputs]).slice(100, 100)
    assert pa.concat_tables(rows).equals(want)
    # rows 100..199 lie in row groups 3..6 of 12: only those four are charged
    rg = [pq.ParquetFile(f.path).metadata.row_group(i) for f in inputs for i in range(3)]
    sizes = [sum(g.column(c).total_compressed_size for c in range(g.num_columns)) for g in rg]
    assert bucket.charged_bytes == sum(sizes[3:7])


@pytest.mark.parametrize(("strategy", "threads"), [(Strategy(ZORDER, ("k", "s")), 1), (Strategy(ZORDER, ("k", "s")), 3),
                                                   (Strategy(SORT, ("s", "k"), ("desc", "asc"), ("last", "last")), 2)])
def test_ordered_rewrites_keep_every_row(tmp_path: Path, strategy: Strategy, threads: int) -> None:
    io = PyArrowFileIO()
    inputs = _inputs(tmp_path, 3, 50)
    outs = [str(tmp_path / f"z-{i}.parquet") for i in range(4)]
    bucket = TokenBucket(10**12)
    rewrite_group(io, inputs, outs, strategy, OutputOptions(SCHEMA, row_group_rows=1000), bucket, threads=threads)
    key = [("k", "ascending"), ("s", "ascending")]
    assert _read_all(outs).sort_by(key).equals(_read_all([f.path for f in inputs]).sort_by(key))
    if strategy.name == SORT:   # the outputs, in order, are one sorted sequence
        rows = _read_all(outs).to_pylist()
        assert rows == sorted(rows, key=lambda r: (tuple(-ord(c) for c in r["s"]), r["k"]))


def test_a_row_count_that_disagrees_with_the_manifest_fails_the_group(tmp_path: Path) -> None:
    io = PyArrowFileIO()
    inputs = _inputs(tmp_path, 2, 10)
    lying = [inputs[0], FileInfo(inputs[1].path, inputs[1].size, 15)]
    bucket = TokenBucket(10**12)
    with pytest.raises(ValueError, match="holds 10 rows, its manifest entry says 15"):
        rewrite_group(io, lying, [str(tmp_path / "o.parquet")], Strategy(BINPACK),
                      OutputOptions(SCHEMA, row_group_rows=8), bucket)
    with pytest.raises(ValueError, match="cannot split 2 rows into 3 files"):
        split_bounds(2, 3)


def test_compaction_threads_come_from_the_environment_or_the_cpus(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LIFECYCLE_COMPACTION_THREADS", "3")
    assert compaction_threads() == 3
    monkeypatch.setenv("LIFECYCLE_COMPACTION_THREADS", "zero")
    with pytest.raises(ConfigError, match="LIFECYCLE_COMPACTION_THREADS: expected a whole number"):
        compaction_threads()
    monkeypatch.delenv("LIFECYCLE_COMPACTION_THREADS")
    assert 1 <= compaction_threads() <= 4


def test_outputs_dictionary_encode_only_the_columns_whose_values_repeat(tmp_path: Path) -> None:
    rng = np.random.default_rng(4)
    n = 40_000
    schema = pa.schema([("kind", pa.string()), ("v", pa.float64()), ("q", pa.int32())])
    t = pa.table({"kind": [f"kind-{i % 12}" for i in range(n)], "v": rng.random(n),
                  "q": (np.arange(n) % 5).astype(np.int32)}, schema=schema)
    src = tmp_path / "in.parquet"
    pq.write_table(t, src)
    out = str(tmp_path / "out.parquet")
    rewrite_group(PyArrowFileIO(), [FileInfo(str(src), src.stat().st_size, n)], [out], Strategy(BINPACK),
                  OutputOptions(schema, row_group_rows=10_000), TokenBucket(10**12))
    assert pq.read_table(out).equals(t)
    meta = pq.ParquetFile(out).metadata
    for g in range(meta.num_row_groups):
        encodings = {meta.schema.column(c).name: meta.row_group(g).column(c).encodings for c in range(3)}
        assert "RLE_DICTIONARY" in encodings["kind"] and "RLE_DICTIONARY" in encodings["q"]
        assert "RLE_DICTIONARY" not in encodings["v"], encodings          # random doubles: plain pages
