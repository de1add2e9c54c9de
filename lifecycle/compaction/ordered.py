"""External sort of a file group in bounded memory: sorted runs spilled to local scratch, merged k-way.

The group's rows are read in chunks of at most `Memory.chunk_bytes` (decoded Arrow size). Each chunk (for
Z-order with each row's z-value, `Z`, from quantiles sampled beforehand: a function of the row alone) is
sorted stably and written to the scratch folder as an uncompressed Arrow IPC file (a run). Runs are numbered
in input order and a stable sort keeps ties in input order, so "key, then run, then position in the run"
is exactly the in-memory stable order.

The merge keeps a buffer of every run (the rows loaded and not yet emitted, a suffix of what it read). A step
orders the buffers' key columns, concatenated in run order, stably: keys that pack into one integer (a
z-value; integers, timestamps and repetitive text whose ranges fit 64 bits, lifecycle.compaction.keys) by
numpy's stable sort, which merges the k sorted runs in O(n log k) instead of sorting; otherwise pyarrow's
stable sort. It emits everything up to the first of the buffers' last
rows among the runs with rows still on disk (no row still on disk can come before it): from each run a prefix
of its buffer, gathered into order, while the rest stays as a zero-copy slice. Memory: a chunk while spilling;
while merging, the buffers (about budget / MERGE_SHARE, refilled by 1/k of that per run whatever the number of
runs k), the rows a step emits (their prefixes copied together) and one piece of them in order. A run is written in
batches of at most 1/BATCHES_PER_REFILL of its expected refill (a load reads whole batches, so it overshoots
by at most one). Disk: the group's decoded size once.

The scratch is local and never charged to the bandwidth limiter; its folder belongs to the caller
(lifecycle.compaction.scratch journals and removes it).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Executor
from pathlib import Path

import numpy as np
import pyarrow as pa

from lifecycle.compaction.keys import Keys, key_order
from lifecycle.compaction.keys import merge_order as keys_merge_order
from lifecycle.compaction.spill_encoding import decoded, encoded, repetitive
from lifecycle.compaction.spill_memory import Memory as Memory  # re-exported: callers build it with the runs
from lifecycle.faults import crash_point

Z = "__lifecycle_z"
MIN_BATCH_ROWS = 128
MIN_REFILL_ROWS = 1024
IPC_OPTIONS = pa.ipc.IpcWriteOptions(compression=None)   # lz4 cost more CPU than the disk it saved

KeyFn = Callable[[pa.Table], Keys]   # the key arrays and their orders of a table's rows


def ordering(table: pa.Table, keys: KeyFn) -> pa.Array:
    """Indices ordering `table` by its keys; the sort is stable, so ties keep the table's order."""
    return key_order(*keys(table), table.num_rows)


def merge_order(table: pa.Table, keys: KeyFn) -> np.ndarray:
    """`ordering` of a table made of sorted runs one after another (lifecycle.compaction.keys.merge_order)."""
    return keys_merge_order(*keys(table), table.num_rows)


def taken(table: pa.Table, order: pa.Array | np.ndarray, pool: Executor | None) -> pa.Table:
    """table.take(order), in two halves on the pool (pyarrow takes outside the GIL): a compact table either way."""
    half = len(order) // 2
    if pool is None or half < MIN_REFILL_ROWS:
        return table.take(order)
    first = pool.submit(table.take, order[:half])
    second = table.take(order[half:])
    return pa.concat_tables([first.result(), second])


def _sorted(table: pa.Table, keys: KeyFn) -> pa.Table:
    return table.take(ordering(table, keys))


def spill_runs(chunks: Iterator[pa.Table], keys: KeyFn, memory: Memory,
               extra: Callable[[pa.Table], pa.Table] | None = None, pool: Executor | None = None,
               expected_runs: int = 1, encode: Sequence[str] = ()) -> list[Path]:
    """Sort the rows `chunks` yields, a budget-sized chunk at a time, into run files in the scratch folder.
    `expected_runs` (from the group's estimated decoded size) sizes the runs' batches for the merge; the
    columns of `encode` whose values repeat in the first chunk are dictionary-encoded in every run."""
    runs: list[Path] = []
    held: list[pa.Table] = []
    size = 0
    chosen: list[str] | None = None

    def spill() -> None:
        nonlocal held, size, chosen
        chunk = pa.concat_tables(held).combine_chunks()
        held, size = [], 0
        if extra is not None:
            chunk = extra(chunk)
        if chosen is None:
            chosen = repetitive(chunk, encode)
        chunk = encoded(chunk, chosen)
        # with a pool, the chunk's halves are sorted at once (pyarrow sorts outside the GIL): two runs a chunk
        half = chunk.num_rows // 2 if pool is not None and chunk.num_rows >= 4 * MIN_REFILL_ROWS else chunk.num_rows
        parts = [chunk.slice(0, half), chunk.slice(half)] if half < chunk.num_rows else [chunk]
        del chunk
        if pool is not None and len(parts) == 2:
            first = pool.submit(_sorted, parts[0], keys)
            second = _sorted(parts[1], keys)
            done = [first.result(), second]
        else:
            done = [_sorted(parts[0], keys)]
        del parts
        for part in done:
            path = memory.scratch / f"run-{len(runs):05d}.arrow"
            # small batches: the merge holds at least one of every run, so they stay small beside its refill
            batch_bytes = memory.run_batch_bytes(max(expected_runs * len(done), len(runs) + 1))
            batch_rows = max(MIN_BATCH_ROWS, int(batch_bytes * part.num_rows / max(part.nbytes, 1)))
            with pa.OSFile(str(path), "wb") as sink, pa.ipc.new_file(sink, part.schema, options=IPC_OPTIONS) as w:
                w.write_table(part, max_chunksize=batch_rows)
            runs.append(path)
            crash_point("spill.after-run")

    for table in chunks:
        held.append(table)
        size += table.nbytes
        if size >= memory.chunk_bytes:
            spill()
    if held:
        spill()
    return runs


class _Run:
    """One spilled run: its file, and its buffer of rows loaded but not yet emitted (in the run's order)."""

    def __init__(self, path: Path) -> None:
        self._file = pa.OSFile(str(path), "rb")
        self._reader = pa.ipc.open_file(self._file)
        self._next = 0
        self.buffer = self._reader.schema.empty_table()

    @property
    def on_disk(self) -> bool:
        """Whether rows of this run are still unread."""
        return bool(self._next < self._reader.num_record_batches)

    def load(self, rows: int) -> None:
        batches = []
        got = 0
        while got < rows and self.on_disk:
            b = self._reader.get_batch(self._next)
            self._next += 1
            batches.append(b)
            got += b.num_rows
        if batches:
            self.buffer = pa.concat_tables([self.buffer, pa.Table.from_batches(batches, schema=self._reader.schema)])

    def close(self) -> None:
        self._file.close()


def merge_runs(paths: list[Path], keys: KeyFn, key_columns: Sequence[str], memory: Memory, row_bytes: float,
               workers: Executor | None = None, decode: Sequence[str] = ()) -> Iterator[pa.Table]:
    """The runs' rows in order (the Z column included), in batches; `keys` reads only `key_columns`. The
    dictionary-encoded columns of `decode` are cast back to their own type."""
    runs = [_Run(p) for p in paths]
    # about budget / MERGE_SHARE loaded at once; a step also holds the rows it emits and one piece in order
    refill = max(MIN_REFILL_ROWS, int(memory.refill_bytes(len(runs)) / max(row_bytes, 1.0)))
    piece = max(MIN_REFILL_ROWS, int(memory.take_bytes / max(row_bytes, 1.0)))
    try:
        while True:
            for r in runs:
                if r.on_disk and r.buffer.num_rows < refill // 2:
                    r.load(refill)
            live = [r for r in runs if r.buffer.num_rows]
            if not live:
                return
            sizes = np.array([r.buffer.num_rows for r in live], np.int64)
            ends = np.cumsum(sizes)
            # the order needs the keys only: the other columns are copied for the rows emitted, not carried ones
            order = merge_order(pa.concat_tables([r.buffer.select(list(key_columns)) for r in live]), keys)
            waiting = [i for i, r in enumerate(live) if r.on_disk]
            if waiting:
                position = np.empty(len(order), np.int64)
                position[order] = np.arange(len(order), dtype=np.int64)
                cut = int(position[ends[waiting] - 1].min()) + 1   # through the first of their last rows
            else:
                cut = len(order)
            emitted = order[:cut].astype(np.int64)   # pyarrow sorts give uint64 indices
            del order
            run_of = np.searchsorted(ends, emitted, side="right")
            counts = np.bincount(run_of, minlength=len(live))   # from each run a prefix of its buffer
            heads = np.cumsum(counts) - counts
            emitted = emitted + (heads - (ends - sizes))[run_of]   # positions among the prefixes
            prefixes = pa.concat_tables([r.buffer.slice(0, int(c)) for r, c in zip(live, counts, strict=True)])
            for r, c in zip(live, counts, strict=True):
                r.buffer = r.buffer.slice(int(c))
            source = prefixes.combine_chunks()   # one copy, not one per take
            del prefixes, run_of
            for start in range(0, len(emitted), piece):   # handed on in pieces: one piece in order at a time
                rows = taken(source, emitted[start:start + piece], workers)
                crash_point("spill.merge-step")
                yield decoded(rows, decode)
            del source, emitted
    finally:
        for r in runs:
            r.close()
