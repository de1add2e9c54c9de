"""External sort of a file group in bounded memory: sorted runs spilled to local scratch, merged k-way.

The group's rows are read in chunks of at most `Memory.chunk_bytes` (decoded Arrow size). Each chunk gets its
rows' positions in input order (`SEQ`, the tie-break, so the merged order is exactly the stable in-memory
order for a sort) and, for Z-order, each row's z-value (`Z`, from quantiles sampled beforehand, a function of
the row alone); it is sorted and written to the scratch folder as an uncompressed Arrow IPC file (a run).
The merge keeps a few batches of every run in memory: it sorts what is loaded, emits everything up to the
smallest "last loaded row" among the runs not yet exhausted (no row still on disk can come before it), and
refills the runs that ran low. Memory: a chunk while spilling, about budget / MERGE_SHARE of loaded rows while
merging, whatever the number of runs k: each run's refill is 1/k of that, and a run is written in batches of
at most 1/BATCHES_PER_REFILL of its expected refill (a load reads whole batches, so it overshoots by at most
one; with fixed 2 MiB batches, 88 runs of an 8 GB group added ~300 MiB of peak). Disk: the group's decoded
size once.

The scratch is local and never charged to the bandwidth limiter; its folder belongs to the caller
(lifecycle.compaction.scratch journals and removes it).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Executor
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from lifecycle.compaction.spill_encoding import decoded, encoded, repetitive
from lifecycle.compaction.spill_memory import Memory as Memory  # re-exported: callers build it with the runs
from lifecycle.faults import crash_point

SEQ = "__lifecycle_seq"
RUN = "__lifecycle_run"
Z = "__lifecycle_z"
MIN_BATCH_ROWS = 128
MIN_REFILL_ROWS = 1024
IPC_OPTIONS = pa.ipc.IpcWriteOptions(compression=None)   # lz4 cost more CPU than the disk it saved

KeyFn = Callable[[pa.Table], tuple[list[pa.Array | pa.ChunkedArray], list[str]]]   # key arrays, orders


def ordering(table: pa.Table, keys: KeyFn) -> pa.Array:
    """Indices ordering `table` by its keys, then by input position (unique: a total, stable order)."""
    arrays, orders = keys(table)
    names = [f"k{i}" for i in range(len(arrays))] + ["seq"]
    sort_keys = [(n, o) for n, o in zip(names, orders, strict=False)] + [("seq", "ascending")]
    return pc.sort_indices(pa.table([*arrays, table.column(SEQ)], names=names), sort_keys=sort_keys)


def taken(table: pa.Table, order: pa.Array, pool: Executor | None) -> pa.Table:
    """table.take(order), in two halves on the pool (pyarrow takes outside the GIL): a compact table either way."""
    half = len(order) // 2
    if pool is None or half < MIN_REFILL_ROWS:
        return table.take(order)
    first = pool.submit(table.take, order.slice(0, half))
    second = table.take(order.slice(half))
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
    size = seq = 0
    chosen: list[str] | None = None

    def spill() -> None:
        nonlocal held, size, seq, chosen
        chunk = pa.concat_tables(held).combine_chunks()
        held, size = [], 0
        chunk = chunk.append_column(SEQ, pa.array(np.arange(seq, seq + chunk.num_rows, dtype=np.int64)))
        seq += chunk.num_rows
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
    def __init__(self, index: int, path: Path) -> None:
        self.index = index
        self._file = pa.OSFile(str(path), "rb")
        self._reader = pa.ipc.open_file(self._file)
        self._next = 0
        self.last_seq = -1
        self.pending = 0

    @property
    def done(self) -> bool:
        return bool(self._next >= self._reader.num_record_batches)

    def load(self, rows: int) -> pa.Table:
        batches = []
        got = 0
        while got < rows and not self.done:
            b = self._reader.get_batch(self._next)
            self._next += 1
            batches.append(b)
            got += b.num_rows
        table = pa.Table.from_batches(batches, schema=self._reader.schema)
        if got:
            self.last_seq = int(table.column(SEQ)[-1].as_py())
        return table.append_column(RUN, pa.array(np.full(got, self.index, np.int32)))

    def close(self) -> None:
        self._file.close()


def merge_runs(paths: list[Path], keys: KeyFn, memory: Memory, row_bytes: float,
               workers: Executor | None = None, decode: Sequence[str] = ()) -> Iterator[pa.Table]:
    """The runs' rows in order (SEQ, RUN and Z columns included), in batches; the dictionary-encoded columns
    of `decode` are cast back to their own type."""
    runs = [_Run(i, p) for i, p in enumerate(paths)]
    # about budget / MERGE_SHARE loaded at once; a step holds the loaded rows, the carry and both takes
    refill = max(MIN_REFILL_ROWS, int(memory.refill_bytes(len(runs)) / max(row_bytes, 1.0)))
    carry: pa.Table | None = None
    try:
        while True:
            loaded = [r.load(refill) for r in runs if not r.done and r.pending < refill // 2]
            parts = ([carry] if carry is not None and carry.num_rows else []) + [t for t in loaded if t.num_rows]
            if not parts:
                return
            pool = pa.concat_tables(parts)
            order = ordering(pool, keys)
            frontier = [r.last_seq for r in runs if not r.done]
            if not frontier:
                yield decoded(taken(pool, order, workers), decode)
                return
            seq = pool.column(SEQ).take(order)
            hit = np.asarray(pc.is_in(seq, value_set=pa.array(frontier, pa.int64())).to_numpy(zero_copy_only=False))
            cut = int(np.argmax(hit)) + 1
            # two takes, not one take and two slices: neither the rows emitted nor the carry pins this pool
            emit, carry = taken(pool, order.slice(0, cut), workers), taken(pool, order.slice(cut), workers)
            del pool, parts, loaded, order, seq
            counts = np.bincount(np.asarray(carry.column(RUN).to_numpy()), minlength=len(runs))
            for r in runs:
                r.pending = int(counts[r.index])
            crash_point("spill.merge-step")
            yield decoded(emit, decode)
    finally:
        for r in runs:
            r.close()
