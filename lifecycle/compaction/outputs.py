"""Output files of a rewrite: the parquet writer behind a bandwidth-charged stream, and the row ranges of the
planned outputs (output i of k gets rows [i*R/k, (i+1)*R/k) of the group's order).

A writer dictionary-encodes only the columns whose values repeat in the first rows it writes (at most one
distinct value in MAX_DISTINCT_SHARE, judged on up to DICTIONARY_SAMPLE_ROWS rows). Dictionary-encoding
every column, pyarrow's default, hashes the values of columns that never repeat (measurements, ids) until the
dictionary overflows and the writer falls back to plain pages, in every row group: on 1.2 M narrow rows
1.76 s and 47.1 MB against 1.11 s and 39.9 MB. Tables with nested columns keep the default."""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
from pyiceberg.io import FileIO

from lifecycle.bandwidth import Limiter
from lifecycle.compaction.spill_encoding import repetitive

OnWritten = Callable[[int, str, int], None]   # (output index, path, bytes written so far in the group)
DICTIONARY_SAMPLE_ROWS = 16_384


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
        self._writer: pq.ParquetWriter | None = None   # opened at the first row group: its rows pick the dictionaries
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

    def _open(self, first: pa.Table | None) -> pq.ParquetWriter:
        if self._writer is None:
            schema = self.options.schema
            flat = not any(pa.types.is_nested(f.type) for f in schema)
            dictionary: bool | list[str] = True
            if first is not None and flat:
                dictionary = repetitive(first.slice(0, DICTIONARY_SAMPLE_ROWS), schema.names)
            self._writer = pq.ParquetWriter(self._stream, schema, compression=self.options.compression,
                                            compression_level=self.options.compression_level,
                                            use_dictionary=dictionary)
        return self._writer

    def _flush(self) -> None:
        if self._buffer:
            rows = pa.concat_tables(self._buffer)
            self._open(rows).write_table(rows, row_group_size=self.options.row_group_rows)
            self._buffer, self._buffered, self._buffered_bytes = [], 0, 0

    def close(self) -> int:
        """Finish the file; returns its size in bytes."""
        self._flush()
        self._open(None).close()
        self._stream.close()
        return self._stream.written

    def abort(self) -> None:
        try:
            if self._writer is not None:
                self._writer.close()
        finally:
            self._stream.close()
