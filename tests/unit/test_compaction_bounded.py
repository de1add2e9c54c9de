"""Sort and Z-order in bounded memory: groups larger than the budget are spilled as sorted runs and merged."""

from __future__ import annotations

import random
import threading
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
from pyiceberg.io.pyarrow import PyArrowFileIO

from lifecycle.bandwidth import TokenBucket
from lifecycle.compaction.outputs import FileWriter, split_bounds
from lifecycle.compaction.planner import SORT, ZORDER, FileInfo, Strategy
from lifecycle.compaction.rewrite import OutputOptions, rewrite_group
from lifecycle.compaction.spill_memory import MERGE_SHARE, Memory
from lifecycle.compaction.stream_writer import write_stream
from lifecycle.compaction.zorder import TOTAL_BITS, Quantiles, _numeric, morton

SCHEMA = pa.schema([("id", pa.int64()), ("kind", pa.string()), ("ts", pa.timestamp("us")), ("v", pa.float64())])
TINY = 1 << 18        # 256 KiB budget: 64 KiB chunks, a few thousand rows per run


def _inputs(tmp_path: Path, n_files: int, rows: int, seed: int = 1) -> list[FileInfo]:
    rng = random.Random(seed)
    infos = []
    for i in range(n_files):
        t = pa.table({"id": [rng.randrange(10**6) if rng.random() > 0.02 else None for _ in range(rows)],
                      "kind": [f"kind-{rng.randrange(40):02d}" for _ in range(rows)],
                      "ts": pa.array([rng.randrange(10**12) for _ in range(rows)], pa.timestamp("us")),
                      "v": [rng.random() for _ in range(rows)]}, schema=SCHEMA)
        p = str(tmp_path / f"in-{i:03d}.parquet")
        pq.write_table(t, p, row_group_size=max(1, rows // 2))
        infos.append(FileInfo(p, Path(p).stat().st_size, rows))
    return infos


def _read(paths: list[str]) -> pa.Table:
    return pa.concat_tables([pq.read_table(p) for p in paths])


def _rewrite(tmp_path: Path, inputs: list[FileInfo], strategy: Strategy, k: int, tag: str,
             memory: Memory | None, threads: int = 2) -> list[str]:
    outs = [str(tmp_path / f"{tag}-{i}.parquet") for i in range(k)]
    done: list[int] = []
    rewrite_group(PyArrowFileIO(), inputs, outs, strategy, OutputOptions(SCHEMA, row_group_rows=5000),
                  TokenBucket(10**12), threads=threads, on_written=lambda i, p, b: done.append(i), memory=memory)
    assert sorted(done) == list(range(k))
    return outs


@pytest.mark.parametrize(("threads", "strategy"), [
    (1, Strategy(SORT, ("kind", "id"), ("asc", "desc"), ("last", "first"))),   # several keys: sorted per step
    (2, Strategy(SORT, ("kind", "id"), ("asc", "desc"), ("last", "first"))),
    (2, Strategy(SORT, ("ts",), ("asc",), ("last",))),      # one integer key: the runs merged by numpy
    (2, Strategy(SORT, ("kind",), ("asc",), ("first",))),   # one repetitive text key: merged through its ranks
], ids=["keys-1-thread", "keys", "timestamp", "text"])
def test_spilled_sort_writes_exactly_the_in_memory_order(tmp_path: Path, threads: int, strategy: Strategy) -> None:
    inputs = _inputs(tmp_path, 12, 3000)
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    spilled = _rewrite(tmp_path, inputs, strategy, 5, "spill", Memory(TINY, scratch), threads)
    assert len(list(scratch.glob("run-*.arrow"))) > 10      # the group really went through runs on disk
    in_memory = _rewrite(tmp_path, inputs, strategy, 5, "mem", None, threads)
    for a, b in zip(spilled, in_memory, strict=True):       # same rows, same order, same split: ties stable
        assert pq.read_table(a).equals(pq.read_table(b))
    counts = [pq.ParquetFile(p).metadata.num_rows for p in spilled]
    assert sum(counts) == 36000 and max(counts) - min(counts) <= 1


def test_a_group_within_half_the_budget_is_ordered_in_memory_and_a_larger_one_spills(tmp_path: Path) -> None:
    inputs = _inputs(tmp_path, 8, 2000)
    decoded = sum(pq.read_table(f.path).cast(SCHEMA).nbytes for f in inputs)
    strategy = Strategy(SORT, ("id",), ("asc",), ("last",))
    for budget, spills in ((int(decoded * 2.2), False), (int(decoded * 1.8), True)):
        scratch = tmp_path / f"scratch-{budget}"
        scratch.mkdir()
        outs = _rewrite(tmp_path, inputs, strategy, 3, f"b{budget}", Memory(budget, scratch))
        assert bool(list(scratch.glob("run-*.arrow"))) == spills
        ids = _read(outs)["id"].drop_null().to_pylist()
        assert len(ids) == sum(1 for f in inputs for v in pq.read_table(f.path)["id"].to_pylist() if v is not None)
        assert ids == sorted(ids)


def test_a_group_within_the_budget_is_ordered_in_memory(tmp_path: Path) -> None:
    inputs = _inputs(tmp_path, 3, 500)
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    strategy = Strategy(ZORDER, ("id", "kind"))
    small = _rewrite(tmp_path, inputs, strategy, 2, "small", Memory(1 << 30, scratch))
    assert not list(scratch.iterdir())
    unbounded = _rewrite(tmp_path, inputs, strategy, 2, "unbounded", None)
    assert _read(small).equals(_read(unbounded))


def _mean_spans(table: pa.Table, column: pa.ChunkedArray, files: int) -> float:
    lo, hi = pc.min(column).as_py(), pc.max(column).as_py()
    step = table.num_rows // files
    spans = [(pc.max(column.slice(i, step)).as_py() - pc.min(column.slice(i, step)).as_py()) / (hi - lo)
             for i in range(0, step * files, step)]
    return sum(spans) / len(spans)


def test_spilled_zorder_keeps_every_row_and_clusters_both_columns(tmp_path: Path) -> None:
    inputs = _inputs(tmp_path, 12, 3000, seed=7)
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    outs = _rewrite(tmp_path, inputs, Strategy(ZORDER, ("id", "kind")), 64, "z", Memory(TINY, scratch))
    runs = list(scratch.glob("run-*.arrow"))
    assert len(runs) > 10
    with pa.OSFile(str(runs[0]), "rb") as f:      # 40 kinds: spilled as a dictionary, written back as text
        assert pa.types.is_dictionary(pa.ipc.open_file(f).schema.field("kind").type)
    assert all(pq.read_schema(p).field("kind").type == pa.string() for p in outs)
    got, want = _read(outs), _read([f.path for f in inputs])
    key = [("id", "ascending"), ("ts", "ascending"), ("kind", "ascending"), ("v", "ascending")]
    assert got.sort_by(key).equals(want.sort_by(key))                   # every row, exactly once
    rows = got.filter(pc.is_valid(got["id"]))
    kinds = pc.rank(rows["kind"], sort_keys="ascending", tiebreaker="dense")
    assert _mean_spans(rows, rows["id"], 63) < 0.30
    assert _mean_spans(rows, pa.chunked_array([kinds]), 63) < 0.30


def test_quantile_ranks_are_a_function_of_the_row() -> None:
    sample = pa.table({"n": [5, 1, 9, None], "s": ["b", "a", "c", "a"], "d": pa.array([3, 1, 2, 2], pa.date32())})
    q = Quantiles.of(sample, ["n", "s", "d"])
    t = pa.table({"n": [1, 9, None, 5], "s": ["a", "zz", "b", "a"], "d": pa.array([1, 3, 2, 1], pa.date32())})
    z = q.zvalues(t).to_pylist()
    assert [q.zvalues(t.slice(i, 1)).to_pylist()[0] for i in range(4)] == z   # one row alone: same value
    assert z[0] < z[3] < z[1] and z[2] > z[3]               # (1,a,1) < (5,a,1) < (9,zz,3); null n ranks last
    above = pa.table({"n": [10**9], "s": ["zzz"], "d": pa.array([9], pa.date32())})
    assert q.zvalues(above).to_pylist() == [(1 << 39) - 1]   # above every sampled value: the top rank, 13 bits each



def _interleave(columns: list[np.ndarray], bits: int) -> list[int]:
    """The Morton code by its definition, one bit at a time: column 0 on the highest bit of every level."""
    out = []
    for row in zip(*(c.tolist() for c in columns), strict=True):
        z = 0
        for b in range(bits - 1, -1, -1):
            for v in row:
                z = (z << 1) | ((v >> b) & 1)
        out.append(z)
    return out


@pytest.mark.parametrize("n", [1, 2, 3])
def test_the_numpy_morton_code_is_the_bitwise_interleave(n: int) -> None:
    rng = np.random.default_rng(n)
    bits = min(32, TOTAL_BITS // n)
    cols = [rng.integers(0, 1 << bits, 2000, dtype=np.uint64) for _ in range(n)]
    cols[0][:3] = [0, (1 << bits) - 1, 1 << (bits - 1)]
    assert morton(cols, bits).tolist() == _interleave(cols, bits)


def test_strings_rank_by_their_first_eight_bytes_whatever_their_layout() -> None:
    words = ["", "a", "ab", "abcdefgh", "abcdefghij", "abcdefgi", "b", "é", "\x00a", None]
    want = [int.from_bytes((w or "").encode()[:8].ljust(8, b"\0"), "big") for w in words]
    values = pa.array(words)
    assert _numeric(values).tolist() == want
    assert _numeric(pa.chunked_array([values.slice(0, 4), values.slice(4)])).tolist() == want
    assert _numeric(values.slice(3, 4)).tolist() == want[3:7]
    assert _numeric(values.dictionary_encode()).tolist() == want

def test_the_merge_holds_a_bounded_slice_of_every_run_however_many_runs(tmp_path: Path) -> None:
    """The merge loads whole run batches; runs are batched from the expected number of runs, so a group that
    spills into many runs costs no more than one that spills into a few (one batch a run, in sum, stays a
    small part of what the merge may load)."""
    inputs = _inputs(tmp_path, 24, 20000, seed=3)
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    budget = 4 << 20
    strategy = Strategy(SORT, ("id",), ("asc",), ("last",))
    outs = _rewrite(tmp_path, inputs, strategy, 3, "many", Memory(budget, scratch))
    runs = sorted(scratch.glob("run-*.arrow"))
    assert len(runs) >= 12
    largest = []
    for run in runs:
        with pa.OSFile(str(run), "rb") as f:
            reader = pa.ipc.open_file(f)
            largest.append(max(reader.get_batch(i).nbytes for i in range(reader.num_record_batches)))
    assert sum(largest) <= budget / (MERGE_SHARE * 4)      # fixed batches (chunk / 64) summed to 1.5x that
    got = _read(outs)
    assert got.num_rows == 24 * 20000
    ids = got["id"].drop_null().to_pylist()
    assert ids == sorted(ids)


def _ordered_stream(n: int, piece: int) -> Iterator[pa.Table]:
    for start in range(0, n, piece):
        ids = list(range(start, min(n, start + piece)))
        yield pa.table({"id": ids, "kind": ["k"] * len(ids), "ts": pa.array(ids, pa.timestamp("us")),
                        "v": [float(i) for i in ids]}, schema=SCHEMA)


def test_the_stream_writer_fills_every_output_in_order_several_at_once(tmp_path: Path) -> None:
    outs = [str(tmp_path / f"o-{i}.parquet") for i in range(5)]
    done: list[int] = []
    written = write_stream(PyArrowFileIO(), _ordered_stream(10_000, 777), outs, split_bounds(10_000, 5),
                           OutputOptions(SCHEMA, row_group_rows=500), TokenBucket(10**12), 2,
                           lambda i, p, b: done.append(i))
    assert done == [0, 1, 2, 3, 4] and written == sum(Path(p).stat().st_size for p in outs)
    assert _read(outs)["id"].to_pylist() == list(range(10_000))


def test_a_failing_output_fails_the_stream_and_aborts_the_others(tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    outs = [str(tmp_path / f"o-{i}.parquet") for i in range(4)]
    real = FileWriter.write

    def write(self: FileWriter, rows: pa.Table) -> None:
        if self.path == outs[2]:
            raise OSError("No space left on device")
        real(self, rows)

    monkeypatch.setattr(FileWriter, "write", write)
    done: list[int] = []
    with pytest.raises(OSError, match="No space left"):
        write_stream(PyArrowFileIO(), _ordered_stream(8_000, 300), outs, split_bounds(8_000, 4),
                     OutputOptions(SCHEMA, row_group_rows=500), TokenBucket(10**12), 2,
                     lambda i, p, b: done.append(i))
    assert done == [0]                         # retired before the failure; the open ones are aborted
    assert not Path(outs[3]).exists()          # and nothing after the failing output was started
    assert not [t for t in threading.enumerate() if t.name.startswith("compact-output-")]   # no writer left
