"""Safety-core scenarios for compaction, each reproduced against a real catalog and PostgreSQL: a retried
rewrite never resurrects deleted rows; a busy writer neither livelocks the compaction nor makes it lie; a
lost partition lock stops the run before its commit; recovery keeps outputs any retained snapshot reads."""

from __future__ import annotations

import dataclasses
import random
from datetime import date
from typing import Any

import psycopg
import pytest

from lifecycle.errors import LockLostError
from lifecycle.jobs.base import ABANDONED, DONE, JobContext, JobRequest
from lifecycle.jobs.runtime import execute
from lifecycle.lineage import lineage_properties
from lifecycle.state.models import EXECUTING
from lifecycle_cli.synth import ArchiveSpec, add_small_files
from tests.iceberg_writes import commit_position_delete
from tests.integration.test_compaction import (
    TABLE,
    A,
    checksum,
    files_by_partition,
    make_archive,
    rows_of,
    scaled,
)

DAY = date(2024, 3, 15)
OTHER = [("gemini-4", DAY)]


def _writer_props() -> dict[str, str]:
    return lineage_properties("ingest-7", "ingest 1.0+abc")


def test_a_delete_landing_before_a_later_commit_never_resurrects_rows(ctx: JobContext,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """A writer deletes a row of one compaction input, then another commit lands, then the compaction's
    compare-and-swap fails and PyIceberg retries: the retry must validate from the plan's base (where the delete
    is visible), not from the window head, and abandon the group."""
    ctx = scaled(ctx)
    archive = make_archive(ctx, partitions=[("apollo-7", DAY), *OTHER], files=[12, 2])
    table = ctx.catalog.load_table(TABLE)
    victim = next(iter(table.scan(row_filter="mission_id == 'apollo-7'").plan_files())).file
    real = type(ctx.catalog).commit_table
    raced: list[bool] = []

    def race(self: Any, tbl: Any, requirements: Any, updates: Any) -> Any:
        if not raced and any(getattr(u, "snapshot", None) is not None
                             and u.snapshot.summary.operation.value == "replace" for u in updates):
            raced.append(True)
            commit_position_delete(ctx.catalog.load_table(TABLE), victim, [0], _writer_props())
            add_small_files(ctx.catalog.load_table(TABLE), ArchiveSpec(partitions=OTHER, files_per_partition=1,
                                                                       file_bytes=(20_000, 30_000)),
                            random.Random(5))
        return real(self, tbl, requirements, updates)

    monkeypatch.setattr(type(ctx.catalog), "commit_table", race)
    before = rows_of(table, A).num_rows
    result = execute(ctx, JobRequest("compact", TABLE, A))
    assert raced
    assert result.status == ABANDONED and result.counts["groups_abandoned"] == 1
    assert rows_of(ctx.catalog.load_table(TABLE), A).num_rows == before - 1     # the deleted row stays deleted
    staged = ctx.store.entries(kind="stage")
    assert staged and all(e.state == "removed" for e in staged)
    assert archive.rows > 0


def test_a_busy_writer_does_not_starve_compaction_and_nothing_is_lost(ctx: JobContext,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """A writer appends to the very partition being compacted, and one of its appends lands before each of the
    compaction's first eight compare-and-swaps (more than PyIceberg's own four retries): appends are not a
    conflict for a rewrite, so the commit is retried on the new head (metadata work only) until it lands."""
    from prometheus_client import REGISTRY

    ctx = scaled(ctx)
    make_archive(ctx, files=14)
    before = rows_of(ctx.catalog.load_table(TABLE)).num_rows
    writer_table = ctx.catalog.load_table(TABLE)
    rng = random.Random(11)
    real = type(ctx.catalog).commit_table
    appended: list[int] = []

    def busy(self: Any, tbl: Any, requirements: Any, updates: Any) -> Any:
        replace = any(getattr(u, "snapshot", None) is not None
                      and u.snapshot.summary.operation.value == "replace" for u in updates)
        if replace and len(appended) < 8:
            _, rows = add_small_files(writer_table.refresh(), ArchiveSpec(
                partitions=[("apollo-7", DAY)], files_per_partition=1, file_bytes=(20_000, 30_000)), rng)
            appended.append(rows)
        return real(self, tbl, requirements, updates)

    retries = REGISTRY.get_sample_value("lifecycle_commit_retries_total", {"job": "compact"}) or 0.0
    monkeypatch.setattr(type(ctx.catalog), "commit_table", busy)
    result = execute(ctx, JobRequest("compact", TABLE, A))
    assert len(appended) == 8
    assert result.status == DONE, result
    assert result.counts["groups_committed"] == 1 and "groups_abandoned" not in result.counts
    assert (REGISTRY.get_sample_value("lifecycle_commit_retries_total", {"job": "compact"}) or 0.0) > retries
    assert rows_of(ctx.catalog.load_table(TABLE)).num_rows == before + sum(appended)


def test_a_lost_partition_lock_stops_a_whole_table_run_before_its_commit(ctx: JobContext, db_url: str) -> None:
    ctx = scaled(ctx)
    archive = make_archive(ctx)
    before = files_by_partition(archive.table)[A]

    def kill_partition_lock(msg: str) -> None:
        if "wrote 1/" in msg:
            with psycopg.connect(db_url, autocommit=True) as conn:
                conn.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name LIKE %s"
                             " AND datname = current_database()", (f"lifecycle-lock:compact:{TABLE}:%",))

    with pytest.raises(LockLostError):
        execute(dataclasses.replace(ctx, on_progress=kill_partition_lock), JobRequest("compact", TABLE))
    assert files_by_partition(archive.table)[A] == before            # nothing committed
    (plan,) = ctx.store.open_plans("compact", TABLE, A)
    assert plan.state == EXECUTING                                   # never handed to the committer
    rerun = execute(ctx, JobRequest("compact", TABLE))
    assert rerun.status == DONE and rerun.counts["recovered_removed"] == 1
    assert checksum(rows_of(archive.table)) == checksum(rows_of(ctx.catalog.load_table(TABLE)))


def test_recovery_keeps_outputs_that_a_retained_snapshot_still_reads(ctx: JobContext, tmp_path: Any) -> None:
    """The replace lands and the run dies before recording it; the replace snapshot is then expired while a
    tag still reads its outputs and the current snapshot no longer does. Recovery must see the outputs as
    reachable (landed), never delete them."""
    import os


    ctx = scaled(ctx)
    compact_killed_after_its_commit(ctx, tmp_path)
    table = ctx.catalog.load_table(TABLE)
    (plan,) = ctx.store.open_plans("compact", TABLE, A)
    outputs = set(plan.payload["outputs"])
    assert outputs <= set(files_by_partition(table)[A])
    replace_snapshot = table.current_snapshot().snapshot_id
    # another writer appends, tags that snapshot, then rewrites the partition away from our outputs
    add_small_files(table, ArchiveSpec(partitions=[("apollo-7", DAY)], files_per_partition=1,
                                       file_bytes=(20_000, 30_000)), random.Random(2))
    table = table.refresh()
    table.manage_snapshots().create_tag(table.current_snapshot().snapshot_id, "audit").commit()
    tag_rows = checksum(rows_of(table))
    table = table.refresh()
    with table.transaction() as tx:
        tx.delete("mission_id == 'apollo-7'", snapshot_properties=_writer_props())
    table = table.refresh()
    table.maintenance.expire_snapshots().by_id(replace_snapshot).commit()   # the replace snapshot is gone
    assert not set(files_by_partition(ctx.catalog.load_table(TABLE)).get(A, {})) & outputs

    rerun = execute(ctx, JobRequest("compact", TABLE, A))
    assert rerun.counts.get("recovered_committed") == 1 and "recovered_removed" not in rerun.counts
    assert all(os.path.exists(p.removeprefix("file://")) for p in outputs)
    audit = ctx.catalog.load_table(TABLE).refs()["audit"].snapshot_id
    assert checksum(ctx.catalog.load_table(TABLE).scan(snapshot_id=audit).to_arrow()) == tag_rows


def test_an_abandoned_group_makes_the_cli_exit_1_and_says_so_in_json(
        ctx: JobContext, monkeypatch: pytest.MonkeyPatch, tmp_path: Any, capsys: pytest.CaptureFixture[str]) -> None:
    import json

    from lifecycle_cli import main
    from tests.conftest import write_config

    ctx = scaled(ctx)
    make_archive(ctx)
    victim = next(iter(ctx.catalog.load_table(TABLE).scan().plan_files())).file
    real = type(ctx.catalog).commit_table
    raced: list[bool] = []

    def race(self: Any, tbl: Any, requirements: Any, updates: Any) -> Any:
        if not raced and any(getattr(u, "snapshot", None) is not None
                             and u.snapshot.summary.operation.value == "replace" for u in updates):
            raced.append(True)
            commit_position_delete(ctx.catalog.load_table(TABLE), victim, [1], _writer_props())
        return real(self, tbl, requirements, updates)

    monkeypatch.setattr(type(ctx.catalog), "commit_table", race)
    config = write_config(tmp_path / "lifecycle.toml", ctx.settings)
    with pytest.raises(SystemExit) as exited:
        main(["--config", str(config), "run", "compact", "--table", TABLE, "--json"])
    assert exited.value.code == 1
    out, err = capsys.readouterr()
    result = json.loads(out)
    assert result["status"] == "abandoned" and result["counts"]["groups_abandoned"] == 1
    assert "abandoned" in err


def compact_killed_after_its_commit(ctx: JobContext, tmp_path: Any) -> None:
    """A `lifecycle-cli run compact` over a fresh archive, SIGKILLed right after its replace commit landed."""
    import subprocess
    import sys

    from tests.conftest import REPO, cli_env, write_config

    make_archive(ctx)
    config = write_config(tmp_path / "lifecycle.toml", ctx.settings)
    out = subprocess.run([sys.executable, "-m", "lifecycle_cli", "run", "compact", "--table", TABLE],
                         env=cli_env(config, LIFECYCLE_CRASH_AT="compact.after-commit"), cwd=REPO,
                         capture_output=True, text=True, timeout=240)
    assert out.returncode == -9, out.stderr            # the replace landed; the run died before recording it
