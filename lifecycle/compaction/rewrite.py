"""Rewriters: stream a file group's rows (bin-pack) or order them (sort, Z-order) and split them into
exactly the planned number of output files.

Every read is charged to the bandwidth limiter before it happens (one parquet row group at a time), and
every chunk the parquet writer emits is charged before it is written. Bin-pack memory is bounded by the
row-group size, not by the group.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
from pyiceberg.io import FileIO

from lifecycle.bandwidth import Limiter
from lifecycle.compaction.planner import SORT, ZORDER, Strategy
from lifecycle.compaction.zorder import sort_indices, zorder_indices

ROW_GROUP_BYTES = 64 << 20   # aim for ~64 MiB (input-compressed estimate) row groups
MIN_ROW_GROUP_ROWS = 1024


class _ChargedStream:
    """A write-only file object that charges the limiter before each chunk reaches the output stream."""

    def __init__(self, out: Any, limiter: Limiter) -> None:
        self._out = out
        self._limiter = limiter
        self.written = 0
        self.closed = False

    def write(self, data: bytes | memoryview) -> int:
        n = len(data)
        self._limiter.acquire(n)
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


def read_row_groups(io: FileIO, paths: Sequence[str], schema: pa.Schema, limiter: Limiter) -> Iterator[pa.Table]:
    """Yield each input's row groups in order, cast to the table's arrow schema (field ids included)."""
    names = schema.names
    for path in paths:
        with io.new_input(path).open() as f:
            pf = pq.ParquetFile(f)
            meta = pf.metadata
            for i in range(meta.num_row_groups):
                rg = meta.row_group(i)
                limiter.acquire(sum(rg.column(c).total_compressed_size for c in range(rg.num_columns)))
                yield pf.read_row_group(i, columns=names).select(names).cast(schema)


class SplitWriter:
    """Writes `total_rows` rows into exactly len(paths) files, file i getting rows [i*R/k, (i+1)*R/k)."""

    def __init__(self, io: FileIO, paths: Sequence[str], total_rows: int, schema: pa.Schema, limiter: Limiter,
                 row_group_rows: int, compression: str = "zstd", compression_level: int | None = None,
                 on_written: Callable[[int, str, int], None] | None = None) -> None:
        if total_rows < len(paths):
            raise ValueError(f"cannot split {total_rows} rows into {len(paths)} files")
        self.io, self.paths, self.total_rows, self.schema = io, list(paths), total_rows, schema
        self.limiter, self.row_group_rows = limiter, max(1, row_group_rows)
        self.compression, self.compression_level, self.on_written = compression, compression_level, on_written
        k = len(self.paths)
        self.bounds = [(i + 1) * total_rows // k for i in range(k)]
        self.index = 0
        self.rows_in = 0
        self.bytes_out = 0
        self._stream: _ChargedStream | None = None
        self._writer: pq.ParquetWriter | None = None
        self._buffer: list[pa.Table] = []
        self._buffered = 0

    def _open(self) -> None:
        out = self.io.new_output(self.paths[self.index]).create(overwrite=True)
        self._stream = _ChargedStream(out, self.limiter)
        self._writer = pq.ParquetWriter(self._stream, self.schema, compression=self.compression,
                                        compression_level=self.compression_level)

    def _flush(self) -> None:
        if not self._buffer:
            return
        if self._writer is None:
            self._open()
        assert self._writer is not None
        self._writer.write_table(pa.concat_tables(self._buffer), row_group_size=self.row_group_rows)
        self._buffer, self._buffered = [], 0

    def _close_file(self) -> None:
        self._flush()
        if self._writer is None:
            self._open()
        assert self._writer is not None and self._stream is not None
        self._writer.close()
        self._stream.close()
        self.bytes_out += self._stream.written
        path = self.paths[self.index]
        self._writer, self._stream = None, None
        if self.on_written is not None:
            self.on_written(self.index, path, self.bytes_out)
        self.index += 1

    def write(self, rows: pa.Table) -> None:
        offset = 0
        while offset < rows.num_rows:
            if self.index >= len(self.paths):
                raise ValueError("more rows than planned")
            room = self.bounds[self.index] - self.rows_in
            take = min(room, rows.num_rows - offset)
            if take > 0:
                self._buffer.append(rows.slice(offset, take))
                self._buffered += take
                self.rows_in += take
                offset += take
                if self._buffered >= self.row_group_rows:
                    self._flush()
            if self.rows_in == self.bounds[self.index]:
                self._close_file()

    def finish(self) -> None:
        if self.rows_in != self.total_rows:
            raise ValueError(f"expected {self.total_rows} rows, got {self.rows_in}")
        while self.index < len(self.paths):  # only when total rows were already reached (never in practice)
            self._close_file()

    def abort(self) -> None:
        if self._writer is not None:
            try:
                self._writer.close()
            finally:
                if self._stream is not None:
                    self._stream.close()
        self._writer, self._stream = None, None


def row_group_rows(input_bytes: int, records: int) -> int:
    per_row = max(1.0, input_bytes / max(records, 1))
    return max(MIN_ROW_GROUP_ROWS, int(ROW_GROUP_BYTES / per_row))


def rewrite_group(io: FileIO, inputs: Sequence[str], total_rows: int, strategy: Strategy, schema: pa.Schema,
                  writer: SplitWriter, limiter: Limiter) -> None:
    """Read the inputs and write them through `writer`: streamed for bin-pack, ordered otherwise."""
    chunks = read_row_groups(io, inputs, schema, limiter)
    try:
        if strategy.name not in (SORT, ZORDER):
            for chunk in chunks:
                writer.write(chunk)
        else:
            group = pa.concat_tables(list(chunks))
            if strategy.name == SORT:
                order = sort_indices(group, strategy.columns, strategy.directions, strategy.nulls)
            else:
                order = zorder_indices(group, strategy.columns)
            group = group.take(order)
            step = max(writer.row_group_rows, 1)
            for start in range(0, group.num_rows, step):
                writer.write(group.slice(start, step))
        writer.finish()
    except BaseException:
        writer.abort()
        raise
