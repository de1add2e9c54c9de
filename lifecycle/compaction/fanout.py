"""The compaction fan-out: which partitions of a table need compaction, decided from one streamed census of
the current snapshot (never the table's DataFiles). Beat's per-table planning task calls it."""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

from lifecycle.compaction.census import census
from lifecycle.compaction.planner import is_candidate
from lifecycle.compaction.strategy import select_strategy, thresholds_for
from lifecycle.settings import TableSettings


def candidate_partitions(table: Any, table_name: str, ts: TableSettings) -> list[str]:
    """The partitions compaction would work on (see `fanout_plan`)."""
    return fanout_plan(table, table_name, ts)[0]


def fanout_plan(table: Any, table_name: str, ts: TableSettings,
                skip: Collection[str] = ()) -> tuple[list[str], int]:
    """(candidate partitions, small-file backlog) from ONE streamed pass over the current snapshot's manifests
    (lifecycle/compaction/census.py: a few integers per partition, never the table's DataFiles), decided by compaction's
    own planner rule with the table-property thresholds (a file with many deletes makes its partition one).
    Partitions in `skip` (quarantined) are left out."""
    strategy = select_strategy(table.properties, table.sort_order(), table.schema())
    thresholds = thresholds_for(ts, table.properties, strategy)
    _snapshot_id, counts = census(table, thresholds.small_file_bytes, ts.small_file_bytes)
    backlog = sum(c.backlog for c in counts.values())
    return sorted(p for p, c in counts.items()
                  if p not in skip and (is_candidate(c.small, thresholds) or c.heavy)), backlog
