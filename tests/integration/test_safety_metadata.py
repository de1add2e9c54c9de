"""Safety-core scenarios for the metadata jobs, each on a real catalog and PostgreSQL: a manifest rewrite whose
snapshot was expired is still recognised as landed; a REST-like catalog that only sees serialized requirements
cannot make expire purge a tag's files; a table with gc.enabled=false loses no file to any job."""

from __future__ import annotations

import random
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import pytest
from pyiceberg.catalog.sql import SqlCatalog
from pyiceberg.table.update import AssertRefSnapshotId, AssertTableUUID, TableRequirement

from lifecycle.clock import ManualClock
from lifecycle.errors import LifecycleError
from lifecycle.expiration.job import run_expire
from lifecycle.expiration.purge import run_purge
from lifecycle.iceberg.reachability import live_set, reachable_from
from lifecycle.jobs.base import JobContext, JobRequest
from lifecycle.jobs.runtime import execute
from lifecycle_cli.synth import ArchiveSpec, add_small_files, build_archive
from tests.conftest import cli_env, run_cli, with_table_settings, write_config
from tests.integration.test_manifests_rewrite import IDENT, build_fast_appended, local, sorted_rows

SPEC = ArchiveSpec(partitions=[("apollo-7", date(2024, 3, 15))], files_per_partition=2, file_bytes=(20_000, 40_000),
                   history_snapshots=30, history_rewrite_every=3)


def test_manifest_rewrite_recovery_keeps_manifests_that_later_snapshots_use(
        catalog: Any, clock: ManualClock, ctx: JobContext, tmp_path: Path) -> None:
    """The rewrite lands, the run dies before recording it, the rewrite snapshot is expired (short retention)
    while later snapshots still read its manifests: recovery must call it landed and delete nothing."""
    settings = with_table_settings(ctx.settings, IDENT, manifest_target_bytes=16 * 1024, retention_days=0,
                                   min_snapshots_to_keep=1)
    table = build_fast_appended(catalog, clock)
    config = write_config(tmp_path / "lifecycle.toml", settings)
    args = ["run", "rewrite-manifests", "--table", IDENT]
    assert run_cli(args, cli_env(config, LIFECYCLE_CRASH_AT="rewrite-manifests.after-commit")).returncode == -9
    (plan,) = ctx.store.open_plans("rewrite-manifests", IDENT)
    staged = [e.path for e in ctx.store.entries(plan_id=plan.plan_id)]
    table = table.refresh()
    rewrite_snapshot = table.current_snapshot().snapshot_id
    add_small_files(table, ArchiveSpec(partitions=[("apollo-7", date(2024, 3, 15))], files_per_partition=1,
                                       file_bytes=(1_500, 2_500)), random.Random(4))
    table = table.refresh()
    expected = sorted_rows(table)
    table.maintenance.expire_snapshots().by_id(rewrite_snapshot).commit()
    table = table.refresh()
    assert table.metadata.snapshot_by_id(rewrite_snapshot) is None
    later = live_set(table.io, table.metadata, table.metadata_location)
    assert set(staged) & later                    # the current snapshot still reads the rewritten manifests

    rerun = run_cli(args, cli_env(config))
    assert rerun.returncode == 0, rerun.stderr
    assert all(local(p).exists() for p in set(staged) & later)
    assert sorted_rows(catalog.load_table(IDENT)).equals(expected)
    assert ctx.store.plan(plan.plan_id).state == "done"     # type: ignore[union-attr]


class SerializedRequirementsCatalog(SqlCatalog):  # type: ignore[misc]
    """What a REST server sees: only the requirements as they travel over the wire (JSON), no client-side
    attributes. `before_commit` runs once, just before the first commit, like a concurrent writer."""

    before_commit: Any = None

    def commit_table(self, table: Any, requirements: tuple[TableRequirement, ...], updates: tuple[Any, ...]) -> Any:
        wire = []
        for r in requirements:
            cls = {"assert-ref-snapshot-id": AssertRefSnapshotId, "assert-table-uuid": AssertTableUUID}.get(r.type)
            wire.append(cls.model_validate_json(r.model_dump_json()) if cls is not None else r)
        hook, type(self).before_commit = type(self).before_commit, None
        if hook is not None:
            hook()
        return super().commit_table(table, tuple(wire), updates)


def test_a_tag_created_during_expire_on_a_rest_catalog_never_loses_its_files(
        tmp_path: Path, ctx: JobContext, clock: ManualClock) -> None:
    props = {"uri": f"sqlite:///{tmp_path / 'rest-like.db'}", "warehouse": f"file://{tmp_path / 'wh'}"}
    (tmp_path / "wh").mkdir()
    rest = SerializedRequirementsCatalog("archive", **props)
    plain = SqlCatalog("archive", **props)
    build_archive(plain, SPEC, clock)
    ctx.catalog = rest
    dry = run_expire(ctx, JobRequest("expire", IDENT, dry_run=True))
    victim = max(dry.plan["expire_ids"])                  # the newest snapshot the plan expires

    def writer_tags_it() -> None:
        plain.load_table(IDENT).manage_snapshots().create_tag(victim, "audit-late").commit()

    SerializedRequirementsCatalog.before_commit = writer_tags_it
    before = plain.load_table(IDENT)
    with pytest.raises(LifecycleError, match="audit-late"):
        run_expire(ctx, JobRequest("expire", IDENT))
    assert "audit-late" not in plain.load_table(IDENT).refs()          # the catalog did drop the tag

    snap = before.metadata.snapshot_by_id(victim)
    assert snap is not None
    victim_files = reachable_from(before.io, before.metadata, [snap]).all_paths()
    rows = ctx.store.entries(kind="purge", table_name=IDENT)
    held = [e for e in rows if e.path in victim_files]
    assert held and all(e.eligible_at is None for e in held)           # never made eligible
    clock.advance(timedelta(days=10))                                   # purge due, files old enough for orphans
    run_purge(ctx, JobRequest("purge", IDENT))
    assert all(Path(p.removeprefix("file://")).exists() for p in (e.path for e in held))
    orphans = execute(ctx, JobRequest("clean-orphans", IDENT, dry_run=True))
    listed = {c["path"] for c in orphans.plan["candidates"]}
    assert not listed & {e.path for e in held}                         # the orphan scan keeps them too


def test_gc_disabled_tables_lose_no_file_to_purge_or_schema_history(
        catalog: Any, ctx: JobContext, clock: ManualClock, tmp_path: Path) -> None:
    archive = build_archive(catalog, SPEC, clock)
    assert run_expire(ctx, JobRequest("expire", IDENT)).status == "done"
    archive.table.refresh().transaction().set_properties({"gc.enabled": "false"}).commit_transaction()
    rows = ctx.store.entries(kind="purge", table_name=IDENT)
    assert rows
    config = write_config(tmp_path / "lifecycle.toml", with_table_settings(ctx.settings, IDENT, metadata_log_max=1))
    later = (clock.now() + timedelta(days=2)).isoformat()
    out = run_cli(["run", "purge", "--table", IDENT], cli_env(config, LIFECYCLE_FAKE_NOW=later))
    assert out.returncode == 1 and "gc.enabled=false" in out.stderr and len(out.stderr.strip().splitlines()) == 1
    assert all(Path(e.path.removeprefix("file://")).exists() for e in rows)
    assert {e.state for e in ctx.store.entries(kind="purge", table_name=IDENT)} == {"pending"}
    table = catalog.load_table(IDENT)
    log = [m.metadata_file for m in table.metadata.metadata_log]
    out = run_cli(["run", "compact-schema-history", "--table", IDENT], cli_env(config))
    assert out.returncode == 0, out.stderr
    assert all(Path(p.removeprefix("file://")).exists() for p in log)   # trimmed from the log, not deleted
    out = run_cli(["run", "clean-orphans", "--table", IDENT], cli_env(config))
    assert out.returncode == 1 and "gc.enabled=false" in out.stderr
