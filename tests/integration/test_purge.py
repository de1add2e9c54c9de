"""Phase 2: nothing before the delay; after it every journaled file goes to the cold tier then away; a
SIGKILL anywhere resumes with each file copied once and deleted once."""

from __future__ import annotations

import dataclasses
import hashlib
import json
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import boto3
import pyarrow as pa
from pyiceberg.catalog.sql import SqlCatalog

from lifecycle.bandwidth import TokenBucket
from lifecycle.clock import ManualClock
from lifecycle.expiration.job import run_expire
from lifecycle.expiration.purge import run_purge
from lifecycle.iceberg.reachability import live_set
from lifecycle.jobs.base import DONE, NOTHING_TO_DO, JobContext, JobRequest
from lifecycle.settings import Settings
from lifecycle.state.models import DELETED, PENDING
from lifecycle.state.store import StateStore
from lifecycle_cli.synth import ArchiveSpec, build_archive
from tests.conftest import cli_env, pyiceberg_env, run_cli, s3_catalog_properties, with_table_settings, write_config

TABLE = "archive.sda_observations"
SPEC = ArchiveSpec(partitions=[("apollo-7", date(2024, 3, 15))], files_per_partition=2, file_bytes=(20_000, 40_000),
                   history_snapshots=30, tags={"old": 3}, history_rewrite_every=3)


def _read(table: Any, snapshot_id: int) -> pa.Table:
    return table.scan(snapshot_id=snapshot_id, selected_fields=("payload_id", "ts")).to_arrow().sort_by(
        [("payload_id", "ascending"), ("ts", "ascending")])


def _context(settings: Settings, catalog: Any, store: StateStore, clock: ManualClock) -> JobContext:
    return JobContext(settings=settings, catalog=catalog, store=store, clock=clock, limiter=TokenBucket(10**12),
                      db_url=settings.state.database_url, manual=True)


def test_purge_waits_for_the_delay_then_moves_every_file_to_glacier_ir(
    tmp_path: Path, settings: Settings, store: StateStore, clock: ManualClock, moto_endpoint: str, s3_bucket: str,
) -> None:
    props = s3_catalog_properties(tmp_path, moto_endpoint, s3_bucket)
    catalog = SqlCatalog("archive", **props)
    archive = build_archive(catalog, SPEC, clock)
    settings = dataclasses.replace(settings, cold_tier=dataclasses.replace(
        settings.cold_tier, uri=f"s3://{s3_bucket}/cold-tier/"))
    settings = with_table_settings(settings, TABLE, retention_days=30)
    ctx = _context(settings, catalog, store, clock)
    tag_id = archive.tag_snapshot_ids["old"]

    assert run_expire(ctx, JobRequest("expire", TABLE)).status == DONE
    table = catalog.load_table(TABLE)
    current = table.metadata.current_snapshot_id
    before = {sid: _read(table, sid) for sid in (current, tag_id)}
    live = live_set(table.io, table.metadata, table.metadata_location)
    journal = store.entries(kind="purge", table_name=TABLE)
    assert journal and all(e.state == PENDING for e in journal)
    assert not {e.path for e in journal} & live
    skew = timedelta(seconds=settings.fleet.max_clock_skew_seconds)   # no host's clock may purge early
    assert skew > timedelta(0)
    assert all(e.eligible_at == clock.now() + timedelta(hours=24) + skew for e in journal)

    clock.advance(timedelta(hours=24) + skew - timedelta(minutes=1))
    early = run_purge(ctx, JobRequest("purge", TABLE))
    assert early.status == NOTHING_TO_DO and early.counts["deleted"] == 0
    assert all(table.io.new_input(e.path).exists() for e in journal)
    assert store.cold_objects(TABLE) == []

    clock.advance(timedelta(minutes=2))
    result = run_purge(ctx, JobRequest("purge", TABLE))
    assert result.status == DONE and result.counts["deleted"] == len(journal), result.counts

    s3 = boto3.client("s3", endpoint_url=moto_endpoint, region_name="us-east-1")
    cold = {o.source_path: o for o in store.cold_objects(TABLE)}
    assert set(cold) == {e.path for e in journal}
    for entry in store.entries(kind="purge", table_name=TABLE):
        assert entry.state == DELETED
        assert not table.io.new_input(entry.path).exists()
        key = cold[entry.path].cold_uri.removeprefix(f"s3://{s3_bucket}/")
        assert key.startswith("cold-tier/archive/sda_observations/")
        head = s3.head_object(Bucket=s3_bucket, Key=key)
        assert head["StorageClass"] == "GLACIER_IR"
        assert head["ContentLength"] == cold[entry.path].bytes
    table = catalog.load_table(TABLE)
    assert all(table.io.new_input(p).exists() for p in live if not p.endswith("version-hint.text"))
    assert all(_read(table, sid).equals(rows) for sid, rows in before.items())

    config = write_config(tmp_path / "lifecycle.toml", settings)
    out = run_cli(["cold", "ls", "--table", TABLE, "--json"], cli_env(config, **pyiceberg_env(props)))
    assert out.returncode == 0, out.stderr
    listed = json.loads(out.stdout)
    assert listed["count"] == len(journal)
    assert {o["source_path"] for o in listed["objects"]} == set(cold)
    assert {o["storage_class"] for o in listed["objects"]} == {"GLACIER_IR"}


def test_sigkill_during_purge_then_rerun_copies_and_deletes_each_file_once(
    tmp_path: Path, settings: Settings, catalog: Any, store: StateStore, clock: ManualClock,
) -> None:
    archive = build_archive(catalog, SPEC, clock)
    ctx = _context(settings, catalog, store, clock)
    assert run_expire(ctx, JobRequest("expire", TABLE)).status == DONE
    journal = store.entries(kind="purge", table_name=TABLE)
    assert len(journal) >= 10
    digests = {e.path: hashlib.sha256(Path(e.path.removeprefix("file://")).read_bytes()).hexdigest()
               for e in journal}
    table = catalog.load_table(TABLE)
    live = live_set(table.io, table.metadata, table.metadata_location)
    tag_rows = _read(table, archive.tag_snapshot_ids["old"])

    config = write_config(tmp_path / "lifecycle.toml", settings)
    later = (clock.now() + timedelta(hours=25)).isoformat()
    args = ["run", "purge", "--table", TABLE, "--json"]
    for crash in ("purge.after-copy:3", "purge.after-record:2", "purge.after-delete:4"):
        out = run_cli(args, cli_env(config, LIFECYCLE_FAKE_NOW=later, LIFECYCLE_CRASH_AT=crash))
        assert out.returncode == -9, (crash, out.returncode, out.stderr)
    out = run_cli(args, cli_env(config, LIFECYCLE_FAKE_NOW=later))
    assert out.returncode == 0, out.stderr

    entries = store.entries(kind="purge", table_name=TABLE)
    assert [e.state for e in entries] == [DELETED] * len(journal)
    cold = store.cold_objects(TABLE)
    assert sorted(o.source_path for o in cold) == sorted(digests)          # one cold record per file
    for obj in cold:
        local = Path(obj.cold_uri)
        assert hashlib.sha256(local.read_bytes()).hexdigest() == digests[obj.source_path]   # none lost
        assert obj.checksum == f"sha256:{digests[obj.source_path]}"
        assert not Path(obj.source_path.removeprefix("file://")).exists()
    assert not list(Path(settings.cold_tier_uri).rglob("*.partial"))
    table = catalog.load_table(TABLE)
    assert all(table.io.new_input(p).exists() for p in live if not p.endswith("version-hint.text"))
    assert _read(table, archive.tag_snapshot_ids["old"]).equals(tag_rows)


def test_a_file_revived_before_purge_is_skipped_and_kept(
    settings: Settings, catalog: Any, store: StateStore, clock: ManualClock,
) -> None:
    from pyiceberg.table.update import AddSnapshotUpdate, SetSnapshotRefUpdate

    build_archive(catalog, SPEC, clock)
    old = catalog.load_table(TABLE).metadata
    ctx = _context(settings, catalog, store, clock)
    assert run_expire(ctx, JobRequest("expire", TABLE)).status == DONE
    [plan_id] = {e.plan_id for e in store.entries(kind="purge", table_name=TABLE)}
    plan = store.plan(plan_id)
    assert plan is not None
    # An operator restores one expired snapshot (as restoring an older metadata file would).
    revived = next(s for s in old.snapshots if s.snapshot_id == plan.payload["expire_ids"][-1])
    revived = revived.model_copy(update={"parent_snapshot_id": None})   # its parent stays expired
    table = catalog.load_table(TABLE)
    table.catalog.commit_table(table, requirements=(), updates=(
        AddSnapshotUpdate(snapshot=revived),
        SetSnapshotRefUpdate(ref_name="restored", type="tag", snapshot_id=revived.snapshot_id)))
    table = catalog.load_table(TABLE)
    live = live_set(table.io, table.metadata, table.metadata_location)
    journal = store.entries(kind="purge", table_name=TABLE)
    revived_paths = {e.path for e in journal} & live
    assert revived.manifest_list in revived_paths

    clock.advance(timedelta(hours=25))
    result = run_purge(ctx, JobRequest("purge", TABLE))
    assert result.counts["skipped"] == len(revived_paths) and result.counts["deleted"] == len(journal) - len(
        revived_paths)
    for entry in store.entries(kind="purge", table_name=TABLE):
        if entry.path in revived_paths:
            assert entry.state == "skipped" and "revived" in entry.info["reason"]
            assert table.io.new_input(entry.path).exists()
        else:
            assert entry.state == DELETED
    rows = catalog.load_table(TABLE).scan(snapshot_id=revived.snapshot_id).to_arrow()
    assert rows.num_rows > 0


def test_a_file_already_gone_counts_as_deleted_and_the_journal_says_it_was_never_copied(
    settings: Settings, catalog: Any, store: StateStore, clock: ManualClock,
) -> None:
    build_archive(catalog, SPEC, clock)
    ctx = _context(settings, catalog, store, clock)
    assert run_expire(ctx, JobRequest("expire", TABLE)).status == DONE
    journal = store.entries(kind="purge", table_name=TABLE)
    victim = next(e for e in journal if e.info["file"] == "data")
    Path(victim.path.removeprefix("file://")).unlink()
    clock.advance(timedelta(hours=24, seconds=settings.fleet.max_clock_skew_seconds))
    result = run_purge(ctx, JobRequest("purge", TABLE))
    assert result.counts["gone"] == 1 and result.counts["deleted"] == len(journal) - 1
    entry = next(e for e in store.entries(kind="purge", table_name=TABLE) if e.entry_id == victim.entry_id)
    assert entry.state == DELETED and "never copied" in entry.info["note"]
    assert victim.path not in {o.source_path for o in store.cold_objects(TABLE)}
    assert len(store.cold_objects(TABLE)) == len(journal) - 1
    assert run_purge(ctx, JobRequest("purge", TABLE)).status == NOTHING_TO_DO   # idempotent
