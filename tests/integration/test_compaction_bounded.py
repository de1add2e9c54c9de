"""Sort and Z-order compaction with a memory budget far below the group: spilled to scratch, merged, cleaned."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest

from lifecycle.compaction.scratch import SCRATCH, scratch_entry
from lifecycle.jobs.base import DONE, JobContext
from lifecycle.state.models import EXECUTING, PLANNED, REMOVED, STAGE, NewEntry
from tests.integration.test_compaction import (
    TABLE,
    A,
    checksum,
    compact,
    files_by_partition,
    make_archive,
    rows_of,
    scaled,
)
from tests.integration.test_compaction_order import _mean_spans, _sort_key, sort_by_kind_then_payload

TINY = 256 << 10     # 64 KiB chunks: every group here spills a dozen runs or more


def bounded(ctx: JobContext, scratch: Path, budget: int = TINY, **values: Any) -> JobContext:
    ctx = scaled(ctx, **values)
    compaction = dataclasses.replace(ctx.settings.compaction, memory_budget_bytes=budget, scratch_dir=str(scratch))
    return dataclasses.replace(ctx, settings=dataclasses.replace(ctx.settings, compaction=compaction))


def _scratch_entries(ctx: JobContext) -> list[Any]:
    return ctx.store.entries(kind=SCRATCH, table_name=TABLE)


def test_spilled_sort_orders_every_output_and_keeps_every_row(ctx: JobContext, tmp_path: Path,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    runs: list[int] = []
    import lifecycle.compaction.bounded as b
    spill = b.spill_runs
    monkeypatch.setattr(b, "spill_runs", lambda *a, **k: runs.append(len(r := spill(*a, **k))) or r)
    scratch = tmp_path / "scratch"
    ctx = bounded(ctx, scratch, target_file_bytes=300_000)
    table = make_archive(ctx, files=24).table
    sort_by_kind_then_payload(table)
    sums = checksum(rows_of(table))
    result = compact(ctx)
    assert result.status == DONE
    assert runs and min(runs) >= 8                        # the groups really went through disk
    table.refresh()
    outputs = [t.file for t in table.scan().plan_files()]
    assert len(outputs) == result.counts["files_out"] >= 3
    for df in outputs:
        with table.io.new_input(df.file_path).open() as f:
            rows = pq.read_table(f).to_pylist()
        assert rows == sorted(rows, key=_sort_key)
    assert checksum(rows_of(table)) == sums
    assert list(scratch.iterdir()) == []                  # scratch removed on success
    entries = _scratch_entries(ctx)
    assert entries and {e.state for e in entries} == {REMOVED}


def test_spilled_zorder_keeps_each_column_tight_per_file(ctx: JobContext, tmp_path: Path) -> None:
    ctx = bounded(ctx, tmp_path / "scratch", target_file_bytes=64_000)
    archive = make_archive(ctx, files=36, file_bytes=(100_000, 150_000), **{
        "lifecycle.zorder-columns": "payload_id,sensor_kind", "lifecycle.compaction.max-group-bytes": "100000000"})
    sums = checksum(rows_of(archive.table))
    before = files_by_partition(archive.table)[A]
    assert min(_mean_spans(archive.table, ["payload_id", "sensor_kind"]).values()) > 0.8
    result = compact(ctx)
    assert result.status == DONE
    assert len(files_by_partition(archive.table)[A]) == -(-sum(before.values()) // 64_000)
    spans = _mean_spans(archive.table, ["payload_id", "sensor_kind"])
    assert spans["payload_id"] < 0.30 and spans["sensor_kind"] < 0.30, spans
    assert checksum(rows_of(archive.table)) == sums
    assert list((tmp_path / "scratch").iterdir()) == []


def test_a_failed_spilled_rewrite_removes_its_scratch(ctx: JobContext, tmp_path: Path) -> None:
    scratch = tmp_path / "scratch"
    ctx = bounded(ctx, scratch, target_file_bytes=300_000)
    archive = make_archive(ctx, files=24, **{"lifecycle.zorder-columns": "payload_id,sensor_kind"})
    last = sorted(files_by_partition(archive.table)[A])[-1]       # read last: runs are on disk by then
    os.remove(last.removeprefix("file://"))
    with pytest.raises(FileNotFoundError):
        compact(ctx)
    assert list(scratch.iterdir()) == []
    entries = _scratch_entries(ctx)
    assert entries and {e.state for e in entries} == {REMOVED}


def test_recovery_removes_the_scratch_a_dead_run_left(ctx: JobContext, tmp_path: Path) -> None:
    scratch = tmp_path / "scratch"
    ctx = bounded(ctx, scratch, target_file_bytes=300_000)
    archive = make_archive(ctx, files=12, **{"lifecycle.zorder-columns": "payload_id,sensor_kind"})
    sums = checksum(rows_of(archive.table))
    # what a run killed while spilling leaves: an executing plan, a pending stage entry, a scratch folder with runs
    entry = scratch_entry(scratch, "0" * 8 + "-dead-run")
    plan = ctx.store.create_plan("compact", TABLE, A, {"outputs": []}, archive.table.current_snapshot().snapshot_id,
                                    plan_id="0" * 8 + "-dead-run", entries={
                                        STAGE: [NewEntry(f"{archive.table.location()}/data/never-written.parquet")],
                                        SCRATCH: [entry]})
    ctx.store.transition_plan(plan.plan_id, PLANNED, EXECUTING)
    Path(entry.path).mkdir(parents=True)
    (Path(entry.path) / "run-00000.arrow").write_bytes(b"x" * 4096)
    # and a folder of a plan no longer executing, from a run whose recovery happened on another host
    stray = scratch / "lifecycle-scratch-unknown-plan"
    stray.mkdir()
    result = compact(ctx)
    assert result.status == DONE
    assert result.counts.get("recovered_scratch") == 1
    assert list(scratch.iterdir()) == []
    assert {e.state for e in _scratch_entries(ctx)} == {REMOVED}
    assert checksum(rows_of(archive.table)) == sums
