"""Output files of a rewrite: the parquet writer behind a bandwidth-charged stream, and the row ranges of the
planned outputs (output i of k gets rows [i*R/k, (i+1)*R/k) of the group's order)."""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
from pyiceberg.io import FileIO

from lifecycle.bandwidth import Limiter

OnWritten = Callable[[int, str, int], None]   # (output index, path, bytes written so far in the group)


@dataclass(frozen=True)
class OutputOptions:
    schema: pa.Schema                  # the table's arrow schema, Iceberg field ids included
    row_group_rows: int
    compression: str = "zstd"
    compression_level: int | None = None
    row_group_bytes: int | None = None   # also flush a row group at this many decoded bytes (memory budget)


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
        self._buffered_bytes = 0
        self.rows = 0

    def write(self, rows: pa.Table) -> None:
        self._buffer.append(rows)
        self._buffered += rows.num_rows
        self._buffered_bytes += rows.nbytes
        self.rows += rows.num_rows
        limit = self.options.row_group_bytes
        if self._buffered >= self.options.row_group_rows or (limit is not None and self._buffered_bytes >= limit):
            self._flush()

    def _flush(self) -> None:
        if self._buffer:
            self._writer.write_table(pa.concat_tables(self._buffer), row_group_size=self.options.row_group_rows)
            self._buffer, self._buffered, self._buffered_bytes = [], 0, 0

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
