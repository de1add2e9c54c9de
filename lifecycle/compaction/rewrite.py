"""Rewriters: stream a file group's rows (bin-pack) or order them (sort, Z-order) and split them into
exactly the planned number of output files, several output files at a time.

Output i of k gets rows [i*R/k, (i+1)*R/k) of the group (R rows; concatenated input order for bin-pack,
sorted order otherwise), so each output is an independent unit of work: up to `threads` outputs are written
concurrently (pyarrow decodes, encodes and compresses without the GIL). Bin-pack output i reads only the
row groups overlapping its range, streaming: memory is bounded by threads x row-group size, not by the group.
Sort and Z-order read the group in input order; if its decoded rows fit half the memory budget (judged
from the first quarter's bytes per row) they order it once in memory and write the outputs concurrently from
slices of the ordering, otherwise the rows are spilled as sorted runs to local scratch and merged into the
outputs (lifecycle.compaction.bounded).

Every read is charged to the bandwidth limiter before it happens (one parquet row group at a time), and
every chunk the parquet writer emits is charged before it is written.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor, as_completed

import pyarrow as pa
import pyarrow.parquet as pq
from pyiceberg.io import FileIO

from lifecycle.bandwidth import Limiter
from lifecycle.compaction.bounded import prefetched, rewrite_spilled
from lifecycle.compaction.keys import sort_indices
from lifecycle.compaction.outputs import FileWriter, OnWritten, OutputOptions, split_bounds
from lifecycle.compaction.planner import SORT, ZORDER, FileInfo, Strategy
from lifecycle.compaction.spill_memory import Memory, return_freed_memory_at_once
from lifecycle.compaction.zorder import zorder_indices
from lifecycle.errors import ConfigError

ROW_GROUP_BYTES = 64 << 20   # aim for ~64 MiB (input-compressed estimate) row groups
MIN_ROW_GROUP_ROWS = 1024
MAX_DEFAULT_THREADS = 4
THREADS_ENV = "LIFECYCLE_COMPACTION_THREADS"

__all__ = ["FileWriter", "Memory", "OnWritten", "OutputOptions", "split_bounds"]   # re-exported
RowReader = Callable[[Sequence[FileInfo], int, int], Iterator[pa.Table]]   # rows [lo, hi) of the inputs


def compaction_threads() -> int:
    """Output files written at once: $LIFECYCLE_COMPACTION_THREADS, else the CPUs this process may use (≤ 4)."""
    raw = os.environ.get(THREADS_ENV, "").strip()
    if raw:
        if not raw.isdigit() or int(raw) < 1:
            raise ConfigError(f"{THREADS_ENV}: expected a whole number of threads >= 1, got {raw!r}")
        return int(raw)
    return max(1, min(MAX_DEFAULT_THREADS, len(os.sched_getaffinity(0))))


def row_group_rows(input_bytes: int, records: int) -> int:
    per_row = max(1.0, input_bytes / max(records, 1))
    return max(MIN_ROW_GROUP_ROWS, int(ROW_GROUP_BYTES / per_row))


def read_rows(io: FileIO, inputs: Sequence[FileInfo], lo: int, hi: int, schema: pa.Schema,
              limiter: Limiter) -> Iterator[pa.Table]:
    """Rows [lo, hi) of the inputs in order, one row group (or the part of it in range) at a time, cast to the
    table's arrow schema. Inputs and row groups outside the range are never opened or read."""
    names = schema.names
    start = 0
    for info in inputs:
        end = start + info.records
        if end > lo and start < hi:
            with io.new_input(info.path).open() as f:
                pf = pq.ParquetFile(f)
                meta = pf.metadata
                if meta.num_rows != info.records:
                    raise ValueError(f"{info.path} holds {meta.num_rows} rows, its manifest entry says {info.records}")
                rg_start = start
                for i in range(meta.num_row_groups):
                    rg = meta.row_group(i)
                    rg_end = rg_start + rg.num_rows
                    if rg_end > lo and rg_start < hi:
                        limiter.acquire(sum(rg.column(c).total_compressed_size for c in range(rg.num_columns)), "read")
                        rows = pf.read_row_group(i, columns=names).select(names).cast(schema)
                        first, last = max(lo, rg_start) - rg_start, min(hi, rg_end) - rg_start
                        yield rows if (first, last) == (0, rows.num_rows) else rows.slice(first, last - first)
                    rg_start = rg_end
        start = end
        if start >= hi:
            return


def _estimate(head: list[pa.Table], total_rows: int) -> float:
    """The group's decoded bytes, from the bytes per row of the rows read so far."""
    rows: int = sum(t.num_rows for t in head)
    size: int = sum(t.nbytes for t in head)
    return size / max(rows, 1) * total_rows


def _fits(stream: Iterator[pa.Table], limit: int) -> tuple[list[pa.Table], bool]:
    """Read rows from the stream up to `limit` decoded bytes: (rows read, whether that was all of them)."""
    head: list[pa.Table] = []
    size = 0
    for t in stream:
        head.append(t)
        size += t.nbytes
        if size > limit:
            return head, False
    return head, True


def _combined(head: list[pa.Table]) -> pa.Table:
    """The rows of `head` as one table of contiguous columns, built a column at a time, each released from the
    head as soon as it is copied: the copy never holds the group twice, as a whole-table `combine_chunks`
    does (a 455 MiB group: 598 MiB of RSS after combining, 807 MiB when the read tables were kept)."""
    schema = head[0].schema
    columns = []
    for name in schema.names:
        columns.append(pa.chunked_array([c for t in head for c in t.column(name).chunks], schema.field(name).type)
                       .combine_chunks())
        head[:] = [t.drop_columns([name]) for t in head]
    head.clear()
    return pa.Table.from_arrays(columns, schema=schema)


def _order(group: pa.Table, strategy: Strategy) -> pa.Array:
    if strategy.name == SORT:
        return sort_indices(group, strategy.columns, strategy.directions, strategy.nulls)
    return zorder_indices(group, strategy.columns)


def rewrite_group(io: FileIO, inputs: Sequence[FileInfo], outputs: Sequence[str], strategy: Strategy,
                  options: OutputOptions, limiter: Limiter, threads: int = 1,
                  on_written: OnWritten | None = None, reader: RowReader | None = None,
                  memory: Memory | None = None) -> int:
    """Rewrite the inputs into exactly len(outputs) files; returns the bytes written.

    `on_written` runs in the calling thread after each output file is complete (in completion order). On
    any error the files being written are closed and the error is raised; files already complete stay
    (the caller's journal owns them). `reader` replaces the plain parquet reader (merge-on-read: rows with
    their deletes applied, lifecycle.compaction.mor_read; the inputs' `records` are then live rows).
    `memory` bounds sort and Z-order: a group whose decoded rows exceed half the budget (estimated from the
    first quarter's rows; should the rest turn out larger, the rows read so far, at most half the budget, go
    to the spill) is spilled to its scratch folder and merged (lifecycle.compaction.bounded); without it the
    group is ordered in memory."""
    read: RowReader = reader or (lambda ins, lo, hi: read_rows(io, ins, lo, hi, options.schema, limiter))
    total = sum(f.records for f in inputs)
    bounds = split_bounds(total, len(outputs))
    window = max(1, threads)
    if memory is not None and options.row_group_bytes is None:   # the writers' row groups stay within it too
        options = dataclasses.replace(options, row_group_bytes=memory.budget_bytes // (8 * window))
    if memory is not None:
        return_freed_memory_at_once()
    with ThreadPoolExecutor(window, thread_name_prefix="compact") as pool:
        if strategy.name in (SORT, ZORDER):
            limit = memory.chunk_bytes if memory is not None else 1 << 62
            stream = prefetched(read, inputs, pool, window, memory.ahead_bytes if memory is not None else limit)
            head, whole = _fits(stream, limit)
            if not whole and memory is not None and _estimate(head, total) <= memory.in_memory_bytes:
                held = sum(t.nbytes for t in head)   # the rows read so far say the group fits: read the rest
                more, whole = _fits(stream, memory.in_memory_bytes - held)
                head += more
                del more   # the head alone holds the rows: _combined releases them column by column
            if not whole and memory is not None:
                sample_schema = pa.schema([options.schema.field(c) for c in strategy.columns])
                sample_read: RowReader = (
                    (lambda ins, lo, hi: (t.select(list(strategy.columns)) for t in read(ins, lo, hi)))
                    if reader is not None else
                    (lambda ins, lo, hi: read_rows(io, ins, lo, hi, sample_schema, limiter)))
                return rewrite_spilled(io, head, stream, inputs, outputs, bounds, strategy, options, limiter,
                                       memory, pool, sample_read, window, on_written)
            group = _combined(head) if head else options.schema.empty_table()
            order = _order(group, strategy)
            per_take = options.row_group_rows
            if memory is not None:
                per_take = min(per_take, int(memory.take_bytes * group.num_rows / max(group.nbytes, 1)))

            def source(lo: int, hi: int) -> Iterator[pa.Table]:
                step = max(per_take, MIN_ROW_GROUP_ROWS)
                for start in range(lo, hi, step):
                    yield group.take(order.slice(start, min(step, hi - start)))
        else:
            def source(lo: int, hi: int) -> Iterator[pa.Table]:
                return read(inputs, lo, hi)

        def write_one(index: int) -> int:
            lo, hi = bounds[index]
            writer = FileWriter(io, outputs[index], options, limiter)
            try:
                for rows in source(lo, hi):
                    writer.write(rows)
                if writer.rows != hi - lo:
                    raise ValueError(f"expected {hi - lo} rows for {outputs[index]}, got {writer.rows}")
                return writer.close()
            except BaseException:
                writer.abort()
                raise

        futures: dict[Future[int], int] = {pool.submit(write_one, i): i for i in range(len(outputs))}
        written = 0
        try:
            for fut in as_completed(futures):
                written += fut.result()
                if on_written is not None:
                    i = futures[fut]
                    on_written(i, outputs[i], written)
        except BaseException:
            for fut in futures:
                fut.cancel()
            raise
    return written
