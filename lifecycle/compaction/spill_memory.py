"""How much memory a bounded sort or Z-order may hold: the budget, its chunk, the merge's share per run.

`Memory` is the budget and scratch folder of one group (lifecycle.compaction.ordered spills and merges under
it); `return_freed_memory_at_once` makes pyarrow's jemalloc pool give freed pages back without delay.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa

RUN_BATCH_BYTES = 2 << 20     # a spilled run is written in batches of at most this many decoded bytes
MERGE_SHARE = 6               # the merge loads about budget / MERGE_SHARE (a step holds loaded rows, carry, takes)
BATCHES_PER_REFILL = 16       # run batches per refill: a load's overshoot (< one batch a run) stays small


@dataclass(frozen=True)
class Memory:
    """How much a sort or Z-order of one group may hold, and where it may spill."""

    budget_bytes: int
    scratch: Path

    @property
    def chunk_bytes(self) -> int:
        """Decoded rows held at once: sorting needs the rows, their sorted copy and the keys."""
        return max(1 << 16, self.budget_bytes // 4)

    @property
    def in_memory_bytes(self) -> int:
        """Decoded rows a group may have to be ordered in memory: the rows themselves, their ordering and key
        (16 bytes a row) and the writers' slices (`take_bytes` and a row group each) stay within the budget."""
        return self.budget_bytes // 2

    @property
    def ahead_bytes(self) -> int:
        """Decoded bytes the reads of a group may run ahead of the rows being sorted or spilled."""
        return max(1 << 16, self.budget_bytes // 16)

    @property
    def take_bytes(self) -> int:
        """Decoded bytes an in-memory ordering hands a writer at a time."""
        return max(1 << 16, self.budget_bytes // 32)

    def expected_runs(self, group_bytes: float) -> int:
        """Runs a group of `group_bytes` decoded bytes spills into (each run is at least a chunk)."""
        return max(1, math.ceil(group_bytes / self.chunk_bytes))

    def refill_bytes(self, runs: int) -> float:
        """Decoded bytes the merge loads from each of `runs` runs at a time."""
        return self.budget_bytes / (MERGE_SHARE * max(runs, 1))

    def run_batch_bytes(self, runs: int) -> int:
        """Batch size of the runs of a group expected to spill into `runs` runs."""
        return int(min(RUN_BATCH_BYTES, self.refill_bytes(runs) / BATCHES_PER_REFILL))


def return_freed_memory_at_once() -> None:
    """Have pyarrow's jemalloc pool (the compaction pods' ARROW_DEFAULT_MEMORY_POOL) give freed pages back to
    the system at once instead of after its decay time: the spill and the merge free a chunk-sized table
    every step, and pages kept for reuse made the peak grow with the number of steps (2 GB sort, rows only:
    935 MiB spilling, 914 merging with the default decay; 766 and 793 with 0, and 760 / 769 at 0.4 GB).
    Process-wide; a no-op where pyarrow has no jemalloc."""
    try:
        pa.jemalloc_set_decay_ms(0)
    except NotImplementedError:
        pass
