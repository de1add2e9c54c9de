"""The one path identity, end to end: a live file recorded in another local form is never an orphan; purge
deletes (after a cold copy) files recorded as `file:/...` under a `file:///...` location; a journaled path that
climbs out with `..` is never deleted; a writer whose clock runs minutes behind keeps its protection; the
orphan dry run names the files it would delete."""

from __future__ import annotations

import json
import os
import random
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from lifecycle.clock import ManualClock
from lifecycle.expiration.job import run_expire
from lifecycle.expiration.purge import run_purge
from lifecycle.iceberg.datafiles import data_file_from_parquet
from lifecycle.jobs.base import JobContext, JobRequest
from lifecycle.jobs.runtime import execute
from lifecycle.state.models import NewEntry
from lifecycle.state.writers import WriterHeartbeat
from lifecycle_cli.synth import ArchiveSpec, build_archive, make_rows, partition_path, synth_lineage, write_file
from tests.conftest import cli_env, run_cli, with_table_settings, write_config

TABLE = "archive.sda_observations"
DAY = date(2024, 3, 15)
SPEC = ArchiveSpec(partitions=[("apollo-7", DAY)], files_per_partition=3, file_bytes=(20_000, 30_000))


def _local(path: str) -> Path:
    return Path(path.removeprefix("file://").removeprefix("file:"))


def _append_as(table: Any, recorded: str, written: str) -> None:
    """Write rows at `written` and commit the data file recorded under the path string `recorded`."""
    write_file(table, written, make_rows(random.Random(3), "apollo-7", DAY, 40))
    df = data_file_from_parquet(table.io, table.metadata, recorded)
    with table.transaction() as tx, tx.update_snapshot(snapshot_properties=synth_lineage()).fast_append() as app:
        app.append_data_file(df)


def _age(path: Path, days: float) -> None:
    old = path.stat().st_mtime - days * 86400
    os.utime(path, (old, old))


@pytest.mark.parametrize("form", ["double-slash", "dot", "file-colon"])
def test_a_live_file_recorded_in_another_local_form_is_never_an_orphan(
        catalog: Any, clock: ManualClock, ctx: JobContext, form: str) -> None:
    archive = build_archive(catalog, SPEC, clock)
    table = archive.table
    folder = partition_path(table, "apollo-7", DAY)
    written = f"{folder}/odd-form.parquet"
    recorded = {"double-slash": f"{folder}//odd-form.parquet", "dot": f"{folder}/./odd-form.parquet",
                "file-colon": "file:" + written.removeprefix("file://")}[form]
    _append_as(table, recorded, written)
    for p in _local(table.location()).rglob("*"):
        if p.is_file():
            _age(p, 30)
    clock.set(clock.now() + timedelta(days=1))
    before = catalog.load_table(TABLE).scan().to_arrow().num_rows
    dry = execute(ctx, JobRequest("clean-orphans", TABLE, dry_run=True))
    result = execute(ctx, JobRequest("clean-orphans", TABLE))
    assert result.counts.get("deleted", 0) == 0 and not dry.plan["candidates"], result.counts
    assert _local(written).exists()
    assert catalog.load_table(TABLE).scan().to_arrow().num_rows == before


def test_purge_deletes_files_recorded_as_file_colon_slash_after_a_cold_copy(
        catalog: Any, clock: ManualClock, ctx: JobContext) -> None:
    """Java writers record `file:/...`; the table location reads `file:///...`: these files are inside it."""
    archive = build_archive(catalog, SPEC, clock)
    table = archive.table
    written = partition_path(table, "apollo-7", DAY) + "/java-written.parquet"
    java_form = "file:" + written.removeprefix("file://")
    _append_as(table, java_form, written)
    table = table.refresh()
    with table.transaction() as tx:              # a writer deletes the partition: the file becomes dead
        tx.delete("mission_id == 'apollo-7'", snapshot_properties=synth_lineage())
    # PyIceberg stamps the delete with the wall clock, not the test's: expire a day after whichever is later
    deleted_at = datetime.fromtimestamp(catalog.load_table(TABLE).current_snapshot().timestamp_ms / 1000, UTC)
    clock.set(max(clock.now(), deleted_at) + timedelta(days=1))
    settings = with_table_settings(ctx.settings, TABLE, retention_days=0)
    ctx.settings = settings
    assert run_expire(ctx, JobRequest("expire", TABLE)).status == "done"
    journaled = {e.path for e in ctx.store.entries(kind="purge", table_name=TABLE)}
    assert java_form in journaled
    clock.advance(timedelta(days=2))
    result = run_purge(ctx, JobRequest("purge", TABLE))
    assert result.counts["skipped"] == 0, result.counts
    assert not _local(written).exists()
    cold = {o.source_path: o for o in ctx.store.cold_objects(TABLE)}
    assert java_form in cold and Path(cold[java_form].cold_uri).is_file()


def test_a_journaled_path_climbing_out_with_dot_dot_is_never_deleted_nor_copied_onto_itself(
        catalog: Any, clock: ManualClock, ctx: JobContext) -> None:
    archive = build_archive(catalog, SPEC, clock)
    table = archive.table
    precious = _local(table.location()).parent / "precious.bin"
    precious.write_bytes(b"keep me")
    sneaky = f"{table.location()}/metadata/../../precious.bin"
    plan = ctx.store.create_plan("expire", TABLE, "", {"expire_ids": []}, None,
                                 entries={"purge": [NewEntry(sneaky, 7, clock.now(), {"file": "manifest"})]})
    clock.advance(timedelta(hours=1))
    result = run_purge(ctx, JobRequest("purge", TABLE))
    assert result.counts["deleted"] == 0 and result.counts["skipped"] == 1
    assert precious.read_bytes() == b"keep me"
    assert ctx.store.cold_objects(TABLE) == []
    (entry,) = ctx.store.entries(plan_id=plan.plan_id)
    assert entry.state == "skipped" and "outside the table location" in entry.info["reason"]


def test_a_writer_whose_clock_runs_five_minutes_behind_keeps_its_protection(
        catalog: Any, clock: ManualClock, ctx: JobContext, db_url: str) -> None:
    archive = build_archive(catalog, SPEC, clock)
    table = archive.table
    folder = partition_path(table, "apollo-7", DAY)
    in_progress = _local(f"{folder}/writing-now.parquet")
    in_progress.write_bytes(b"half written")
    _age(in_progress, 30)
    behind = ManualClock(clock.now() - timedelta(minutes=5))
    with WriterHeartbeat(db_url, "ingest-behind", paths=[f"{folder}/writing-now.parquet"], clock=behind,
                         interval_seconds=3600):
        result = execute(ctx, JobRequest("clean-orphans", TABLE))
    assert in_progress.exists(), result.counts
    assert result.counts.get("kept_active-writer", 0) == 1


def test_clean_orphans_dry_run_names_the_files_it_would_delete(
        catalog: Any, clock: ManualClock, ctx: JobContext, tmp_path: Path) -> None:
    archive = build_archive(catalog, SPEC, clock)
    root = _local(archive.table.location())
    planted = []
    for i in range(60):
        p = root / "data" / f"stray-{i:03d}.parquet"
        p.write_bytes(b"x" * (i + 1))
        _age(p, 30)
        planted.append(p)
    config = write_config(tmp_path / "lifecycle.toml", ctx.settings)
    text = run_cli(["run", "clean-orphans", "--table", TABLE, "--dry-run"], cli_env(config))
    assert text.returncode == 0, text.stderr
    named = [line.strip() for line in text.stdout.splitlines() if "stray-" in line]
    assert len(named) == 50 and "10 more" in text.stdout
    out = run_cli(["run", "clean-orphans", "--table", TABLE, "--dry-run", "--json"], cli_env(config))
    candidates = json.loads(out.stdout)["plan"]["candidates"]
    assert {c["path"].rsplit("/", 1)[1] for c in candidates} >= {p.name for p in planted}
    assert all(c["bytes"] > 0 and c["age_days"] >= 29 for c in candidates if "stray-" in c["path"])
    assert all(p.exists() for p in planted)
