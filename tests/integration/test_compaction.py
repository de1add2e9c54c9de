"""Compaction end to end on a real PostgreSQL state store and a file warehouse (in-process runs)."""

from __future__ import annotations

import dataclasses
import hashlib
import math
from datetime import date
from typing import Any

import pyarrow as pa
import pytest
from pyiceberg.table import Table

from lifecycle.jobs.base import DONE, NOTHING_TO_DO, JobContext, JobRequest
from lifecycle.jobs.runtime import execute
from lifecycle.state.models import ABANDONED, COMMITTED, REMOVED
from lifecycle_cli.synth import Archive, ArchiveSpec, build_archive
from tests.conftest import with_table_settings

TABLE = "archive.sda_observations"
A = "mission_id=apollo-7,day=2024-03-15"
SMALL = dict(small_file_bytes=200_000, target_file_bytes=1_000_000, min_small_files=10)


def scaled(ctx: JobContext, **values: Any) -> JobContext:
    return dataclasses.replace(ctx, settings=with_table_settings(ctx.settings, TABLE, **{**SMALL, **values}))


def make_archive(ctx: JobContext, files: list[int] | int = 12, partitions: Any = None,
                 file_bytes: tuple[int, int] = (40_000, 150_000), **properties: str) -> Archive:
    parts = partitions or [("apollo-7", date(2024, 3, 15))]
    return build_archive(ctx.catalog, ArchiveSpec(partitions=parts, files_per_partition=files, file_bytes=file_bytes,
                                                  properties=dict(properties)), ctx.clock)


def files_by_partition(table: Table) -> dict[str, dict[str, int]]:
    from lifecycle.compaction.scan import live_files

    table.refresh()
    return {p: {path: int(df.file_size_in_bytes) for path, df in f.files.items()}
            for p, f in live_files(table)[1].items()}


def rows_of(table: Table, partition: str | None = None) -> pa.Table:
    table.refresh()
    t = table.scan().to_arrow()
    if partition is not None:
        mission, day = (kv.split("=")[1] for kv in partition.split(","))
        t = t.filter(pa.compute.equal(t["mission_id"], mission))
        t = t.filter(pa.compute.equal(pa.compute.strftime(t["ts"], format="%Y-%m-%d"), day))
    return t


def checksum(t: pa.Table) -> tuple[int, str]:
    """Row count and an order-independent content checksum."""
    digests = sorted(hashlib.sha256(repr(sorted(r.items())).encode()).hexdigest() for r in t.to_pylist())
    return t.num_rows, hashlib.sha256("".join(digests).encode()).hexdigest()


def compact(ctx: JobContext, partition: str | None = A, dry_run: bool = False) -> Any:
    return execute(ctx, JobRequest("compact", TABLE, partition, dry_run=dry_run))


def test_binpack_replaces_small_files_in_one_commit_and_preserves_rows(ctx: JobContext) -> None:
    ctx = scaled(ctx)
    archive = make_archive(ctx, files=[14, 6, 12], partitions=[
        ("apollo-7", date(2024, 3, 15)), ("apollo-7", date(2024, 3, 16)), ("gemini-4", date(2024, 3, 15))])
    table = archive.table
    before = files_by_partition(table)
    sums = {p: checksum(rows_of(table, p)) for p in before}
    snapshots = len(table.snapshots())
    result = compact(ctx)
    assert result.status == DONE
    after = files_by_partition(table)
    assert len(after[A]) == math.ceil(sum(before[A].values()) / 1_000_000)
    assert not set(after[A]) & set(before[A])
    for other in before:
        if other != A:
            assert after[other] == before[other]
        assert checksum(rows_of(table, other)) == sums[other]
    assert len(table.snapshots()) == snapshots + 1
    summary = table.current_snapshot().summary
    assert summary.operation.value == "replace"
    assert summary["lifecycle.plan-id"] and summary["writer.id"] and summary["writer.commit_hash"]
    assert summary["deleted-data-files"] == str(len(before[A]))
    plan = ctx.store.plan(summary["lifecycle.plan-id"])
    assert plan is not None and plan.state == "done"
    staged = ctx.store.entries(plan_id=plan.plan_id, kind="stage")
    assert sorted(e.path for e in staged) == sorted(after[A]) and {e.state for e in staged} == {COMMITTED}


def test_partition_below_threshold_and_whole_table_run(ctx: JobContext) -> None:
    ctx = scaled(ctx)
    archive = make_archive(ctx, files=[12, 9, 11], partitions=[
        ("apollo-7", date(2024, 3, 15)), ("apollo-7", date(2024, 3, 16)), ("gemini-4", date(2024, 3, 15))])
    before = files_by_partition(archive.table)
    total = checksum(rows_of(archive.table))
    assert compact(ctx, "mission_id=apollo-7,day=2024-03-16").status == NOTHING_TO_DO
    result = compact(ctx, None)
    assert result.status == DONE and result.counts["partitions"] == 2
    after = files_by_partition(archive.table)
    assert after["mission_id=apollo-7,day=2024-03-16"] == before["mission_id=apollo-7,day=2024-03-16"]
    for p in (A, "mission_id=gemini-4,day=2024-03-15"):
        assert len(after[p]) == math.ceil(sum(before[p].values()) / 1_000_000)
    assert checksum(rows_of(archive.table)) == total
    assert compact(ctx, None).status == NOTHING_TO_DO


def test_files_near_target_are_left_alone_and_groups_are_bounded(ctx: JobContext) -> None:
    ctx = scaled(ctx, small_file_bytes=100_000, target_file_bytes=300_000)
    archive = make_archive(ctx, files=24, file_bytes=(30_000, 140_000),
                           **{"lifecycle.compaction.max-group-bytes": "700000"})
    before = files_by_partition(archive.table)[A]
    sums = checksum(rows_of(archive.table))
    big = {p for p, s in before.items() if s >= 100_000}
    assert big, "the fixture should hold files above the small-file size"
    result = compact(ctx)
    after = files_by_partition(archive.table)[A]
    assert big <= set(after)
    assert result.counts["groups_committed"] >= 2
    assert checksum(rows_of(archive.table)) == sums and sums[0] == archive.rows


def test_dry_run_prints_the_plan_and_writes_nothing(ctx: JobContext) -> None:
    ctx = scaled(ctx)
    archive = make_archive(ctx)
    before = files_by_partition(archive.table)
    snapshots = len(archive.table.snapshots())
    result = compact(ctx, None, dry_run=True)
    assert result.status == "dry-run"
    (part,) = result.plan["partitions"]
    assert part["partition"] == A and part["strategy"]["name"] == "binpack"
    assert part["input_files"] == 12 and part["input_bytes"] == sum(before[A].values())
    assert part["planned_outputs"] == math.ceil(part["input_bytes"] / 1_000_000)
    assert any("planned output files" in line for line in result.detail)
    assert files_by_partition(archive.table) == before and len(archive.table.snapshots()) == snapshots
    assert ctx.store.open_plans("compact") == [] and ctx.store.entries() == []


@pytest.mark.parametrize("where", ["same", "other"])
def test_concurrent_append_does_not_abort_the_commit(ctx: JobContext, where: str) -> None:
    from lifecycle_cli.synth import add_small_files

    ctx = scaled(ctx)
    archive = make_archive(ctx, files=[12, 3], partitions=[("apollo-7", date(2024, 3, 15)),
                                                            ("gemini-4", date(2024, 3, 15))])
    writer_table = ctx.catalog.load_table(TABLE)
    appended: list[int] = []
    target = [("apollo-7", date(2024, 3, 15))] if where == "same" else [("gemini-4", date(2024, 3, 15))]

    def writer(msg: str) -> None:
        if "committing" in msg and not appended:
            import random

            _, rows = add_small_files(writer_table, ArchiveSpec(partitions=target, files_per_partition=2,
                                                                file_bytes=(20_000, 30_000)), random.Random(99))
            appended.append(rows)

    ctx = dataclasses.replace(ctx, on_progress=writer)
    result = compact(ctx)
    assert appended and result.counts["groups_committed"] == 1
    assert rows_of(archive.table).num_rows == archive.rows + appended[0]
    assert archive.table.current_snapshot().summary.operation.value == "replace"


def test_concurrent_delete_of_an_input_abandons_the_group(ctx: JobContext) -> None:
    from lifecycle_cli.synth import synth_lineage

    ctx = scaled(ctx)
    archive = make_archive(ctx)
    victim = archive.data_files[A][0]
    writer_table = ctx.catalog.load_table(TABLE)
    staged: list[str] = []

    def writer(msg: str) -> None:
        if "committing" in msg and not staged:
            plan = ctx.store.open_plans("compact", TABLE)[0]
            staged.extend(plan.payload["outputs"])
            df = next(t.file for t in writer_table.scan().plan_files() if t.file.file_path == victim)
            tx = writer_table.transaction()
            with tx.update_snapshot(snapshot_properties=synth_lineage()).overwrite() as ow:
                ow.delete_data_file(df)
            tx.commit_transaction()

    ctx = dataclasses.replace(ctx, on_progress=writer)
    result = compact(ctx)
    assert result.counts["groups_abandoned"] == 1 and "groups_committed" not in result.counts
    after = files_by_partition(archive.table)[A]
    assert set(after) == set(archive.data_files[A]) - {victim}
    for path in staged:
        assert not archive.table.io.new_input(path).exists()
    plan = ctx.store.plan(archive.table.refresh() and ctx.store.entries(kind="stage")[0].plan_id)
    assert plan is not None and plan.state == ABANDONED
    assert {e.state for e in ctx.store.entries(kind="stage")} == {REMOVED}


def test_whole_table_run_skips_a_partition_whose_lock_is_held(ctx: JobContext) -> None:
    from lifecycle.state.locks import AdvisoryLock

    ctx = scaled(ctx)
    archive = make_archive(ctx, files=[12, 12], partitions=[("apollo-7", date(2024, 3, 15)),
                                                             ("gemini-4", date(2024, 3, 15))])
    before = files_by_partition(archive.table)
    with AdvisoryLock(ctx.db_url, "compact", TABLE, A) as held:
        assert held.acquired
        result = compact(ctx, None)
    assert result.counts["partitions_locked"] == 1 and result.counts["groups_committed"] == 1
    after = files_by_partition(archive.table)
    assert after[A] == before[A]
    assert len(after["mission_id=gemini-4,day=2024-03-15"]) < len(before["mission_id=gemini-4,day=2024-03-15"])
