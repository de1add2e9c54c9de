"""Sort and Z-order of a group larger than the memory budget: spill sorted runs, merge them into the outputs.

`prefetched` reads the group in input order a few files ahead (bounded by bytes). `rewrite_spilled` takes the
rows already read (the head that did not fit the budget) and the rest of the stream: Z-order first samples its
columns over the whole group (a projected read when the inputs are plain parquet) for per-column quantiles;
then the rows are spilled as sorted runs (lifecycle.compaction.ordered) and merged, streaming into the planned
outputs one after the other. The spill sorts a chunk's two halves on two threads (two runs a chunk), the
merge's takes are split over two pool threads (lifecycle.compaction.ordered.taken) and the outputs are encoded
beside the merge, several at once (lifecycle.compaction.stream_writer). Repetitive text columns travel through
the runs dictionary-encoded (lifecycle.compaction.spill_encoding).
"""

from __future__ import annotations

import itertools
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor

import numpy as np
import pyarrow as pa
from pyiceberg.io import FileIO

from lifecycle.bandwidth import Limiter
from lifecycle.compaction.keys import sort_keys
from lifecycle.compaction.ordered import KeyFn, Memory, Z, merge_runs, spill_runs
from lifecycle.compaction.outputs import OnWritten, OutputOptions
from lifecycle.compaction.planner import SORT, FileInfo, Strategy
from lifecycle.compaction.spill_encoding import candidates
from lifecycle.compaction.stream_writer import write_stream
from lifecycle.compaction.zorder import SAMPLE_ROWS, Quantiles, sample_rows

RowReader = Callable[[Sequence[FileInfo], int, int], Iterator[pa.Table]]
DECODED_PER_STORED = 4         # a guess of decoded / compressed size, to bound how far reads run ahead


def prefetched(read: RowReader, inputs: Sequence[FileInfo], pool: ThreadPoolExecutor, window: int,
               ahead_bytes: int) -> Iterator[pa.Table]:
    """The inputs' rows in input order; up to `window` files (and about `ahead_bytes` decoded) read ahead."""
    pending: deque[tuple[Future[list[pa.Table]], int]] = deque()
    todo = iter(inputs)
    in_flight = 0

    def submit() -> bool:
        nonlocal in_flight
        f = next(todo, None)
        if f is None:
            return False
        pending.append((pool.submit(lambda: list(read([f], 0, f.records))), f.size))
        in_flight += f.size
        return True

    submit()
    while pending:
        while len(pending) < window and in_flight * DECODED_PER_STORED < ahead_bytes and submit():
            pass
        fut, size = pending.popleft()
        tables = fut.result()
        in_flight -= size
        if not pending:
            submit()
        yield from tables


def _drain(tables: list[pa.Table]) -> Iterator[pa.Table]:
    """The tables in order, each released by the list as it is handed on (the spill frees them chunk by chunk)."""
    tables.reverse()
    while tables:
        yield tables.pop()


def key_fn(strategy: Strategy) -> KeyFn:
    if strategy.name == SORT:
        return lambda t: sort_keys(t, strategy.columns, strategy.directions, strategy.nulls)
    return lambda t: ([t.column(Z)], ["ascending"])


def quantiles(sample_read: RowReader, inputs: Sequence[FileInfo], columns: Sequence[str],
              pool: ThreadPoolExecutor, window: int, ahead_bytes: int) -> Quantiles:
    total = sum(f.records for f in inputs)
    rate = min(1.0, SAMPLE_ROWS / max(total, 1))
    rng = np.random.default_rng(0)
    parts = [sample_rows(t, columns, rate, rng) for t in prefetched(sample_read, inputs, pool, window, ahead_bytes)]
    return Quantiles.of(pa.concat_tables(parts), columns)


def rewrite_spilled(io: FileIO, head: list[pa.Table], rest: Iterator[pa.Table], inputs: Sequence[FileInfo],
                    outputs: Sequence[str], bounds: Sequence[tuple[int, int]], strategy: Strategy,
                    options: OutputOptions, limiter: Limiter, memory: Memory, pool: ThreadPoolExecutor,
                    sample_read: RowReader, window: int, on_written: OnWritten | None) -> int:
    rows = sum(t.num_rows for t in head)
    row_bytes = sum(t.nbytes for t in head) / max(rows, 1)
    extra = None
    if strategy.name != SORT:
        q = quantiles(sample_read, inputs, strategy.columns, pool, window, memory.ahead_bytes)
        extra = lambda t: t.append_column(Z, q.zvalues(t))   # noqa: E731
    keys = key_fn(strategy)
    expected = memory.expected_runs(row_bytes * sum(f.records for f in inputs))
    text = candidates(options.schema)
    runs = spill_runs(itertools.chain(_drain(head), rest), keys, memory, extra, pool, expected, text)
    key_columns = strategy.columns if strategy.name == SORT else (Z,)
    merged = merge_runs(runs, keys, key_columns, memory, row_bytes, pool, text)
    return write_stream(io, merged, outputs, bounds, options, limiter, window, on_written)
