"""Rewriters: stream a file group's rows (bin-pack) or order them (sort, Z-order) and split them into
exactly the planned number of output files, several output files at a time.

Output i of k gets rows [i*R/k, (i+1)*R/k) of the group (R rows; concatenated input order for bin-pack,
sorted order otherwise), so each output is an independent unit of work: up to `threads` outputs are written
concurrently (pyarrow decodes, encodes and compresses without the GIL). Bin-pack output i reads only the
row groups overlapping its range, streaming: memory is bounded by threads x row-group size, not by the group.
Sort and Z-order read the whole group (bounded by the planner's in-memory cap), order it once, then write
the outputs concurrently from slices of the ordering.

Every read is charged to the bandwidth limiter before it happens (one parquet row group at a time), and
every chunk the parquet writer emits is charged before it is written.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
from pyiceberg.io import FileIO

from lifecycle.bandwidth import Limiter
from lifecycle.compaction.planner import SORT, ZORDER, FileInfo, Strategy
from lifecycle.compaction.zorder import sort_indices, zorder_indices
from lifecycle.errors import ConfigError

ROW_GROUP_BYTES = 64 << 20   # aim for ~64 MiB (input-compressed estimate) row groups
MIN_ROW_GROUP_ROWS = 1024
MAX_DEFAULT_THREADS = 4
THREADS_ENV = "LIFECYCLE_COMPACTION_THREADS"

OnWritten = Callable[[int, str, int], None]   # (output index, path, bytes written so far in the group)
RowReader = Callable[[Sequence[FileInfo], int, int], Iterator[pa.Table]]   # rows [lo, hi) of the inputs


@dataclass(frozen=True)
class OutputOptions:
    schema: pa.Schema                  # the table's arrow schema, Iceberg field ids included
    row_group_rows: int
    compression: str = "zstd"
    compression_level: int | None = None


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


def split_bounds(total_rows: int, k: int) -> list[tuple[int, int]]:
    """Row ranges of k outputs: as equal as whole rows allow, every output at least one row."""
    if k < 1 or total_rows < k:
        raise ValueError(f"cannot split {total_rows} rows into {k} files")
    edges = [i * total_rows // k for i in range(k + 1)]
    return list(itertools.pairwise(edges))


class _ChargedStream:
    """A write-only file object that charges the limiter before each chunk reaches the output stream."""

    def __init__(self, out: Any, limiter: Limiter) -> None:
        self._out = out
        self._limiter = limiter
        self.written = 0
        self.closed = False

    def write(self, data: bytes | memoryview) -> int:
        n = len(data)
        self._limiter.acquire(n, "write")
        self._out.write(data)
        self.written += n
        return n

    def writable(self) -> bool:
        return True

    def flush(self) -> None:
        pass

    def tell(self) -> int:
        return self.written

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self._out.close()


class FileWriter:
    """One output file: rows are buffered up to a row group, then encoded through a charged stream."""

    def __init__(self, io: FileIO, path: str, options: OutputOptions, limiter: Limiter) -> None:
        self.path, self.options = path, options
        self._stream = _ChargedStream(io.new_output(path).create(overwrite=True), limiter)
        self._writer = pq.ParquetWriter(self._stream, options.schema, compression=options.compression,
                                        compression_level=options.compression_level)
        self._buffer: list[pa.Table] = []
        self._buffered = 0
        self.rows = 0

    def write(self, rows: pa.Table) -> None:
        self._buffer.append(rows)
        self._buffered += rows.num_rows
        self.rows += rows.num_rows
        if self._buffered >= self.options.row_group_rows:
            self._flush()

    def _flush(self) -> None:
        if self._buffer:
            self._writer.write_table(pa.concat_tables(self._buffer), row_group_size=self.options.row_group_rows)
            self._buffer, self._buffered = [], 0

    def close(self) -> int:
        """Finish the file; returns its size in bytes."""
        self._flush()
        self._writer.close()
        self._stream.close()
        return self._stream.written

    def abort(self) -> None:
        try:
            self._writer.close()
        finally:
            self._stream.close()


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


def _ordered(read: RowReader, inputs: Sequence[FileInfo], strategy: Strategy,
             pool: ThreadPoolExecutor) -> tuple[pa.Table, pa.Array]:
    """The whole group (inputs read concurrently, kept in input order) and the ordering of its rows."""
    parts = pool.map(lambda f: list(read([f], 0, f.records)), inputs)
    group = pa.concat_tables([t for part in parts for t in part]).combine_chunks()
    if strategy.name == SORT:
        return group, sort_indices(group, strategy.columns, strategy.directions, strategy.nulls)
    return group, zorder_indices(group, strategy.columns)


def rewrite_group(io: FileIO, inputs: Sequence[FileInfo], outputs: Sequence[str], strategy: Strategy,
                  options: OutputOptions, limiter: Limiter, threads: int = 1,
                  on_written: OnWritten | None = None, reader: RowReader | None = None) -> int:
    """Rewrite the inputs into exactly len(outputs) files; returns the bytes written.

    `on_written` runs in the calling thread after each output file is complete (in completion order). On
    any error the files being written are closed and the error is raised; files already complete stay
    (the caller's journal owns them). `reader` replaces the plain parquet reader (merge-on-read: rows with
    their deletes applied, lifecycle.compaction.mor_read; the inputs' `records` are then live rows)."""
    read: RowReader = reader or (lambda ins, lo, hi: read_rows(io, ins, lo, hi, options.schema, limiter))
    total = sum(f.records for f in inputs)
    bounds = split_bounds(total, len(outputs))
    with ThreadPoolExecutor(max(1, threads), thread_name_prefix="compact") as pool:
        if strategy.name in (SORT, ZORDER):
            group, order = _ordered(read, inputs, strategy, pool)

            def source(lo: int, hi: int) -> Iterator[pa.Table]:
                step = max(options.row_group_rows, 1)
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
