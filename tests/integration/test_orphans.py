"""clean-orphans end to end, on local disk and on moto S3: exactly the right files go, nothing else."""

from __future__ import annotations

import dataclasses
from datetime import date
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import REGISTRY
from pyiceberg.catalog.sql import SqlCatalog

from lifecycle.bandwidth import TokenBucket
from lifecycle.clock import ManualClock
from lifecycle.errors import GcDisabledError
from lifecycle.jobs.base import DONE, DRY_RUN, NOTHING_TO_DO, JobContext, JobRequest
from lifecycle.jobs.runtime import execute
from lifecycle.settings import Settings
from lifecycle.state.store import StateStore
from lifecycle_cli.synth import ArchiveSpec, OrphanSpec, build_archive
from tests.conftest import s3_catalog_properties
from tests.integration.test_orphans_scenario import IDENT, all_files, build, read_table


@pytest.fixture(params=["local", "s3"])
def backend_ctx(request: Any, tmp_path: Path, settings: Settings, store: StateStore, clock: ManualClock,
                db_url: str) -> JobContext:
    if request.param == "local":
        cat = request.getfixturevalue("catalog")
    else:
        endpoint, bucket = request.getfixturevalue("moto_endpoint"), request.getfixturevalue("s3_bucket")
        cat = SqlCatalog("archive", **s3_catalog_properties(tmp_path, endpoint, bucket))
    return JobContext(settings=settings, catalog=cat, store=store, clock=clock, limiter=TokenBucket(10**12),
                      db_url=db_url, manual=True)


def _cleaned(table: str) -> float:
    return REGISTRY.get_sample_value("orphans_cleaned_total", {"table": table}) or 0.0


def test_deletes_exactly_the_unguarded_old_unreachable_files(backend_ctx: JobContext, store: StateStore,
                                                             clock: ManualClock, db_url: str) -> None:
    ctx = backend_ctx
    sc = build(ctx.catalog, clock, store, db_url)
    before = set(all_files(sc.table))
    assert 95 <= len(before) <= 125, len(before)
    assert before == sc.live | sc.unreachable

    dry = execute(ctx, JobRequest("clean-orphans", IDENT, dry_run=True))
    assert dry.status == DRY_RUN
    assert {c["path"] for c in dry.plan["candidates"]} == sc.expected_deleted
    assert all(c["age_days"] >= 7 and c["bytes"] > 0 for c in dry.plan["candidates"])
    assert {g: n for g, n in dry.plan["kept"].items() if n} == {g: len(p) for g, p in sc.kept.items()}
    assert set(all_files(sc.table)) == before, "a dry run deletes nothing"
    assert store.open_plans("clean-orphans") == []

    cleaned = _cleaned(IDENT)
    result = execute(ctx, JobRequest("clean-orphans", IDENT))
    after = set(all_files(sc.table))
    assert result.status == DONE
    assert before - after == sc.expected_deleted
    assert after == before - sc.expected_deleted
    assert result.counts["deleted"] == len(sc.expected_deleted)
    assert result.counts["kept_active-writer"] == len(sc.kept["active-writer"])
    assert _cleaned(IDENT) - cleaned == len(sc.expected_deleted)
    assert read_table(sc.table) == (sc.rows, sc.checksum)
    journal = store.entries(kind="orphan")
    assert {e.path for e in journal} == sc.expected_deleted
    assert {e.state for e in journal} == {"deleted"}

    again = execute(ctx, JobRequest("clean-orphans", IDENT))
    assert again.status == NOTHING_TO_DO
    assert set(all_files(sc.table)) == after


def test_stale_writer_becomes_active_before_the_delete_batch(ctx: JobContext, store: StateStore,
                                                             clock: ManualClock, db_url: str) -> None:
    """Guards are re-checked right before each batch: a journaled candidate that a writer now claims stays."""
    from lifecycle.orphans.execute import execute_plan
    from lifecycle.orphans.plan import JOB
    from lifecycle.safety.landed import LiveSets
    from lifecycle.state.models import NewEntry

    sc = build(ctx.catalog, clock, store, db_url, young=False)
    claimed = sorted(p for p in sc.expected_deleted if "/writer-stale/" in p)
    live_one = sorted(sc.live)[0]
    plan = store.create_plan(JOB, IDENT, "", {}, None, entries={
        "orphan": [NewEntry(p, 1) for p in sorted(sc.expected_deleted)] + [NewEntry(live_one, 1)]})
    with store.cursor() as cur:
        cur.execute("UPDATE writer_heartbeats SET last_heartbeat_at = %s WHERE writer_id = 'writer-stale'",
                    (clock.now(),))
    counts = execute_plan(ctx, store.plan(plan.plan_id), sc.table, LiveSets())  # type: ignore[arg-type]
    after = set(all_files(sc.table))
    assert set(claimed) <= after
    assert live_one in after
    assert counts["kept_active-writer"] == len(claimed)
    assert counts["kept_live"] == 1
    assert counts["deleted"] == len(sc.expected_deleted) - len(claimed)
    kept = {e.path: e.info["guard"] for e in store.entries(plan_id=plan.plan_id, states=["kept"])}
    assert kept == {**dict.fromkeys(claimed, "active-writer"), live_one: "live"}
    assert read_table(sc.table) == (sc.rows, sc.checksum)


def test_gc_disabled_table_is_refused(ctx: JobContext, clock: ManualClock) -> None:
    arch = build_archive(ctx.catalog, ArchiveSpec(files_per_partition=2, file_bytes=(2000, 3000),
                                                  orphans=[OrphanSpec(3, 30)],
                                                  properties={"gc.enabled": "false"}), clock)
    with pytest.raises(GcDisabledError, match=r"gc.enabled=false"):
        execute(ctx, JobRequest("clean-orphans", IDENT))
    assert all(Path(p.removeprefix("file://")).exists() for p, _ in arch.orphans)


def test_uses_the_table_settings_min_age(ctx: JobContext, clock: ManualClock) -> None:
    from tests.conftest import with_table_settings

    arch = build_archive(ctx.catalog, ArchiveSpec(partitions=[("apollo-7", date(2024, 3, 15))],
                                                  files_per_partition=2, file_bytes=(2000, 3000),
                                                  orphans=[OrphanSpec(3, 5), OrphanSpec(2, 1.5)]), clock)
    ctx = dataclasses.replace(ctx, settings=with_table_settings(ctx.settings, IDENT, orphan_min_age_days=2))
    result = execute(ctx, JobRequest("clean-orphans", IDENT))
    assert result.counts["deleted"] == 3
    assert result.counts["kept_too-young"] == 2
    left = set(all_files(arch.table))
    assert {p for p, age in arch.orphans if age == 1.5} <= left
    assert not {p for p, age in arch.orphans if age == 5} & left


def test_scheme_mismatch_is_refused_unless_configured(tmp_path: Path, moto_endpoint: str, s3_bucket: str,
                                                      store: StateStore, clock: ManualClock, db_url: str) -> None:
    """A live file registered as s3a:// under an s3:// location: refused by default, live once configured."""
    import random
    from datetime import UTC, datetime, timedelta

    from pyiceberg.manifest import DataFile

    from lifecycle.errors import UnsafeDeleteError
    from lifecycle.iceberg.datafiles import data_file_from_parquet
    from lifecycle_cli.synth import make_rows, synth_lineage, write_file
    from tests.conftest import make_settings

    cat = SqlCatalog("archive", **s3_catalog_properties(tmp_path, moto_endpoint, s3_bucket))
    arch = build_archive(cat, ArchiveSpec(files_per_partition=2, file_bytes=(2000, 3000),
                                          orphans=[OrphanSpec(3, 30)]), clock)
    table = arch.table
    path = f"{table.location()}/data/mission_id=apollo-7/day=2024-03-15/spark-written.parquet"
    write_file(table, path, make_rows(random.Random(1), "apollo-7", date(2024, 3, 15), 3))
    df = data_file_from_parquet(table.io, table.metadata, path)
    fields = ("content", "file_format", "partition", "record_count", "file_size_in_bytes", "column_sizes",
              "value_counts", "null_value_counts", "nan_value_counts", "lower_bounds", "upper_bounds",
              "split_offsets", "sort_order_id", "spec_id")
    s3a = DataFile.from_args(file_path="s3a://" + path.removeprefix("s3://"),
                             **{k: getattr(df, k) for k in fields})
    with table.transaction() as tx, tx.update_snapshot(snapshot_properties=synth_lineage()).fast_append() as fa:
        fa.append_data_file(s3a)
    table = table.refresh()
    rows = read_table(table)
    clock.set(datetime.now(UTC) + timedelta(days=30))
    orphans = {p for p, _ in arch.orphans}

    def context(settings: Settings) -> JobContext:
        return JobContext(settings=settings, catalog=cat, store=store, clock=clock, limiter=TokenBucket(10**12),
                          db_url=db_url, manual=True)

    plain = make_settings(tmp_path / "data", db_url)
    with pytest.raises(UnsafeDeleteError, match="equivalent_schemes"):
        execute(context(plain), JobRequest("clean-orphans", IDENT))
    assert orphans | {path} <= set(all_files(table)), "nothing deleted"

    eq = make_settings(tmp_path / "data", db_url, orphans={"equivalent_schemes": ["s3", "s3a", "s3n"]})
    result = execute(context(eq), JobRequest("clean-orphans", IDENT))
    after = set(all_files(table))
    assert result.counts["deleted"] == len(orphans)
    assert path in after and not orphans & after
    assert read_table(table) == rows
