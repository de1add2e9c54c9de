"""The streamed fan-out census gives the same candidates and backlog as planning from every live DataFile."""

from __future__ import annotations

import dataclasses
from datetime import date
from typing import Any

import pytest

from lifecycle.clock import ManualClock
from lifecycle.compaction.fanout import fanout_plan
from lifecycle.compaction.planner import plan_table
from lifecycle.compaction.scan import live_files
from lifecycle.compaction.strategy import select_strategy, thresholds_for
from lifecycle_cli.synth import ArchiveSpec, build_archive

TABLE = "archive.sda_observations"
PARTS = [("apollo-7", date(2024, 3, d)) for d in range(10, 16)] + [("apollo-8", date(2024, 3, 15))]


def _from_every_file(table: Any, ts: Any) -> tuple[list[str], int]:
    """What the fan-out computed before it streamed: every live DataFile, then the planner."""
    strategy = select_strategy(table.properties, table.sort_order(), table.schema())
    snapshot_id, parts = live_files(table)
    infos = {p: f.infos() for p, f in parts.items()}
    backlog = sum(1 for files in infos.values() for f in files if f.size < ts.small_file_bytes)
    plan = plan_table(TABLE, snapshot_id, infos, strategy, thresholds_for(ts, table.properties, strategy))
    return sorted(p.partition for p in plan.partitions), backlog


@pytest.mark.parametrize(("small", "min_small"), [(30_000, 2), (35_000, 3), (1_000_000, 4), (25_000, 5), (10, 2)])
def test_the_streamed_census_agrees_with_planning_from_every_file(
    catalog: Any, ctx: Any, clock: ManualClock, small: int, min_small: int,
) -> None:
    build_archive(catalog, ArchiveSpec(partitions=PARTS, files_per_partition=4, file_bytes=(20_000, 40_000),
                                       history_snapshots=6, history_rewrite_every=2), clock)
    table = catalog.load_table(TABLE)
    ts = dataclasses.replace(ctx.settings.for_table(TABLE), small_file_bytes=small, min_small_files=min_small)
    assert fanout_plan(table, TABLE, ts) == _from_every_file(table, ts)
    some = sorted(_from_every_file(table, ts)[0])[:2]
    assert fanout_plan(table, TABLE, ts, skip=some)[0] == [p for p in _from_every_file(table, ts)[0] if p not in some]
