"""Stopping between groups, bandwidth charging, metrics, and commits whose outcome is unknown."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest
from prometheus_client import REGISTRY

from lifecycle.bandwidth import TokenBucket
from lifecycle.errors import CommitOutcomeUnknownError
from lifecycle.jobs.base import DONE, STOPPED, JobContext
from lifecycle.state.models import UNKNOWN, WRITTEN
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


def _metric(name: str) -> float:
    return REGISTRY.get_sample_value(name, {"table": TABLE}) or 0.0


def test_stop_between_groups_commits_finished_groups_and_next_run_continues(ctx: JobContext) -> None:
    ctx = scaled(ctx)
    archive = make_archive(ctx, files=14, file_bytes=(40_000, 150_000),
                           **{"lifecycle.compaction.max-group-bytes": "400000"})
    sums = checksum(rows_of(archive.table))
    before = files_by_partition(archive.table)[A]

    def stop_after_first_group(msg: str) -> None:
        if "group 1/" in msg:  # told to stop while the first group is being rewritten
            ctx.shutdown.set()

    first = compact(dataclasses.replace(ctx, on_progress=stop_after_first_group))
    assert first.status == STOPPED and "1 group(s) committed" in first.detail[0]
    middle = files_by_partition(archive.table)[A]
    assert len(set(before) - set(middle)) >= 2 and len(set(before) & set(middle)) >= 2
    assert checksum(rows_of(archive.table)) == sums
    ctx.shutdown.clear()
    second = compact(ctx)
    assert second.status == DONE and second.counts["groups_committed"] >= 1
    assert not set(before) & set(files_by_partition(archive.table)[A])
    assert checksum(rows_of(archive.table)) == sums
    assert ctx.store.open_plans("compact") == []


def test_every_read_and_write_is_charged_and_metrics_count_inputs(ctx: JobContext) -> None:
    bucket = TokenBucket(10**12)
    ctx = dataclasses.replace(scaled(ctx), limiter=bucket)
    archive = make_archive(ctx)
    before = files_by_partition(archive.table)[A]
    compacted, rewritten = _metric("files_compacted_total"), _metric("lifecycle_bytes_rewritten_total")
    result = compact(ctx)
    after = files_by_partition(archive.table)[A]
    assert bucket.charged_bytes >= sum(after.values()) + 0.9 * sum(before.values())
    assert result.counts["bytes_out"] == sum(after.values())
    assert _metric("files_compacted_total") - compacted == len(before)
    assert _metric("lifecycle_bytes_rewritten_total") - rewritten == sum(after.values())


@pytest.mark.parametrize("landed", [True, False])
def test_unknown_commit_outcome_keeps_staged_files_until_reconciled(
    ctx: JobContext, monkeypatch: pytest.MonkeyPatch, landed: bool
) -> None:
    ctx = scaled(ctx)
    archive = make_archive(ctx)
    sums = checksum(rows_of(archive.table))
    real = type(ctx.catalog).commit_table

    def lost_response(self: Any, *args: Any, **kwargs: Any) -> Any:
        if landed:
            real(self, *args, **kwargs)
        raise ConnectionResetError("connection to the catalog reset")

    monkeypatch.setattr(type(ctx.catalog), "commit_table", lost_response)
    with pytest.raises(CommitOutcomeUnknownError):
        compact(ctx)
    monkeypatch.setattr(type(ctx.catalog), "commit_table", real)
    (plan,) = ctx.store.open_plans("compact", TABLE, A)
    assert plan.state == UNKNOWN
    staged = ctx.store.entries(plan_id=plan.plan_id, kind="stage")
    assert staged and all(e.state == WRITTEN and archive.table.io.new_input(e.path).exists() for e in staged)
    snapshots = len(archive.table.refresh().snapshots())

    rerun = compact(ctx)
    assert rerun.status == DONE
    after = files_by_partition(archive.table)
    if landed:
        assert rerun.counts == {"recovered_committed": 1}
        assert len(archive.table.snapshots()) == snapshots
        assert set(after[A]) == {e.path for e in staged}
    else:
        assert rerun.counts["recovered_removed"] == 1 and rerun.counts["groups_committed"] == 1
        assert not any(archive.table.io.new_input(e.path).exists() for e in staged)
    assert checksum(rows_of(archive.table)) == sums


def test_append_racing_the_commit_is_retried_with_rewrite_validation(
    ctx: JobContext, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A writer's append lands between our refresh and our compare-and-swap: PyIceberg's retry rebuilds the
    replace on the new head, and our validation lets the unrelated append through."""
    import random
    from datetime import date

    from lifecycle_cli.synth import ArchiveSpec, add_small_files

    ctx = scaled(ctx)
    archive = make_archive(ctx)
    writer_table = ctx.catalog.load_table(TABLE)
    real = type(ctx.catalog).commit_table
    raced: list[int] = []

    def race(self: Any, table: Any, requirements: Any, updates: Any) -> Any:
        if not raced and any(getattr(u, "snapshot", None) is not None
                             and u.snapshot.summary.operation.value == "replace" for u in updates):
            raced.append(0)
            _, rows = add_small_files(writer_table, ArchiveSpec(partitions=[("apollo-7", date(2024, 3, 15))],
                                                                files_per_partition=1, file_bytes=(20_000, 30_000)),
                                      random.Random(3))
            raced[0] = rows
        return real(self, table, requirements, updates)

    monkeypatch.setattr(type(ctx.catalog), "commit_table", race)
    result = compact(ctx)
    assert raced and result.counts["groups_committed"] == 1
    table = archive.table.refresh()
    assert table.current_snapshot().summary.operation.value == "replace"
    assert rows_of(table).num_rows == archive.rows + raced[0]
