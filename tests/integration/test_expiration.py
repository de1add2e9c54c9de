"""Phase 1 on a 1,000-snapshot history: exactly the right snapshots expire, the table reads the same, the
plan and the journal are written before the metadata commit, and a concurrent commit is never lost."""

from __future__ import annotations

import random
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from pyiceberg.catalog.sql import SqlCatalog
from pyiceberg.exceptions import CommitFailedException
from pyiceberg.io.pyarrow import schema_to_pyarrow

from lifecycle.bandwidth import TokenBucket
from lifecycle.clock import ManualClock, to_millis
from lifecycle.expiration.commit import commit_expiration
from lifecycle.expiration.job import run_expire
from lifecycle.expiration.plan import plan_expiration
from lifecycle.expiration.retention import Retention, select_expired
from lifecycle.iceberg.reachability import ManifestCache, reachable_from
from lifecycle.jobs.base import DONE, DRY_RUN, JobContext, JobRequest
from lifecycle.settings import Settings
from lifecycle.state.models import DONE as PLAN_DONE
from lifecycle.state.models import PENDING
from lifecycle.state.store import StateStore
from lifecycle_cli.synth import Archive, ArchiveSpec, build_archive, make_rows
from tests.conftest import cli_env, run_cli, with_table_settings, write_config

TABLE = "archive.sda_observations"
NOW = datetime(2026, 11, 26, 2, 0, tzinfo=UTC)
TAGS = {"launch": 40, "anomaly-1": 250, "anomaly-2": 420, "recent": 900}


@pytest.fixture(scope="module")
def big(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[SqlCatalog, Archive]]:
    """1,000 snapshots over 60 days (built once per module: it takes ~25 s)."""
    root = tmp_path_factory.mktemp("big")
    catalog = SqlCatalog("archive", uri=f"sqlite:///{root / 'cat.db'}", warehouse=f"file://{root / 'wh'}")
    spec = ArchiveSpec(partitions=[("apollo-7", date(2024, 3, 15))], files_per_partition=2,
                       file_bytes=(20_000, 40_000), history_snapshots=1000, history_span_days=60, tags=TAGS)
    yield catalog, build_archive(catalog, spec, ManualClock(NOW))


def _files(table: Any, snapshot_id: int) -> set[str]:
    return {t.file.file_path for t in table.scan(snapshot_id=snapshot_id).plan_files()}


def test_1000_snapshots_30_days_expires_exactly_the_old_untagged_ones(
    big: tuple[SqlCatalog, Archive], settings: Settings, store: StateStore,
) -> None:
    catalog, archive = big
    clock = ManualClock(NOW)
    settings = with_table_settings(settings, TABLE, retention_days=30, min_snapshots_to_keep=1)
    ctx = JobContext(settings=settings, catalog=catalog, store=store, clock=clock, limiter=TokenBucket(10**12),
                     db_url=settings.state.database_url, manual=True)
    table = catalog.load_table(TABLE)
    cutoff = to_millis(NOW - timedelta(days=30))
    tagged = set(archive.tag_snapshot_ids.values())
    expected = {s.snapshot_id for s in table.metadata.snapshots if s.timestamp_ms < cutoff} - tagged
    assert 450 < len(expected) < 520
    current = table.metadata.current_snapshot_id
    before_current = _files(table, current)
    old_tags = {name: sid for name, sid in archive.tag_snapshot_ids.items() if name != "recent"}
    before_rows = {name: table.scan(snapshot_id=sid).to_arrow().sort_by("payload_id")
                   for name, sid in old_tags.items()}
    before_recent = _files(table, archive.tag_snapshot_ids["recent"])

    dry = run_expire(ctx, JobRequest("expire", TABLE, dry_run=True))
    assert dry.status == DRY_RUN and set(dry.plan["expire_ids"]) == expected
    assert store.all_open_plans() == [] and store.entries() == []

    result = run_expire(ctx, JobRequest("expire", TABLE))
    assert result.status == DONE, result
    assert result.counts["snapshots"] == len(expected)

    table = catalog.load_table(TABLE)
    remaining = {s.snapshot_id for s in table.metadata.snapshots}
    assert not remaining & expected
    assert remaining == {s for s in archive.history_snapshot_ids if s not in expected} | {current}
    assert not {e.snapshot_id for e in table.metadata.snapshot_log} & expected
    assert table.metadata.current_snapshot_id == current
    assert {name: ref.snapshot_id for name, ref in table.metadata.refs.items() if name != "main"} == \
        archive.tag_snapshot_ids

    # The table reads the same at the current snapshot and at every tag (rows compared at the old tags,
    # the file sets at the two large ones, whose files all still exist).
    assert _files(table, current) == before_current
    assert _files(table, archive.tag_snapshot_ids["recent"]) == before_recent
    for name, sid in old_tags.items():
        assert table.scan(snapshot_id=sid).to_arrow().sort_by("payload_id").equals(before_rows[name])

    # The journal holds exactly reachable-before − reachable-after, pending until 24 h after the commit.
    assert store.all_open_plans() == []
    plan = store.plan(result.detail[0].split()[-1])
    assert plan is not None and plan.state == PLAN_DONE and set(plan.payload["expire_ids"]) == expected
    entries = store.entries(kind="purge", table_name=TABLE)
    assert {e.state for e in entries} == {PENDING}
    # 24 h after the commit, plus the clock-skew margin: no host's clock may make purge start early
    skew = Settings().fleet.max_clock_skew_seconds
    assert {e.eligible_at for e in entries} == {NOW + timedelta(hours=24, seconds=skew)}
    after = reachable_from(table.io, table.metadata, table.metadata.snapshots, ManifestCache()).all_paths()
    journaled = {e.path for e in entries}
    assert not journaled & after
    assert {e.info["file"] for e in entries} >= {"manifest-list", "manifest", "data"}
    assert all(Path(p.removeprefix("file://")).exists() for p in journaled)   # phase 1 deletes nothing

    again = run_expire(ctx, JobRequest("expire", TABLE))
    assert again.status == "nothing-to-do"


SMALL = ArchiveSpec(partitions=[("apollo-7", date(2024, 3, 15))], files_per_partition=2, file_bytes=(20_000, 40_000),
                    history_snapshots=25, tags={"old": 2}, history_rewrite_every=3)


def _small(catalog: Any, clock: ManualClock) -> Archive:
    return build_archive(catalog, SMALL, clock)


def test_a_concurrent_append_or_tag_makes_the_commit_fail_and_changes_nothing(
    catalog: Any, ctx: JobContext, clock: ManualClock,
) -> None:
    archive = _small(catalog, clock)
    stale = catalog.load_table(TABLE)
    base = stale.metadata
    selection = select_expired(base, clock.now(), Retention(30, 1))
    assert selection.expire_ids
    plan = plan_expiration(TABLE, stale.io, base, stale.metadata_location, selection)

    fresh = catalog.load_table(TABLE)
    fresh.append(make_rows(random.Random(1), "apollo-7", date(2024, 3, 15), 5).cast(
        schema_to_pyarrow(fresh.schema())))
    with pytest.raises(CommitFailedException):
        commit_expiration(stale, base, plan, "plan-conflict")
    after = catalog.load_table(TABLE)
    assert {s.snapshot_id for s in base.snapshots} < {s.snapshot_id for s in after.metadata.snapshots}

    # A tag created on a snapshot about to expire (main unchanged) is caught too.
    stale = catalog.load_table(TABLE)
    base = stale.metadata
    selection = select_expired(base, clock.now(), Retention(30, 1))
    plan = plan_expiration(TABLE, stale.io, base, stale.metadata_location, selection)
    victim = selection.expire_ids[0]
    catalog.load_table(TABLE).manage_snapshots().create_tag(victim, "late-tag").commit()
    with pytest.raises(CommitFailedException):
        commit_expiration(stale, base, plan, "plan-conflict-2")
    assert catalog.load_table(TABLE).metadata.refs["late-tag"].snapshot_id == victim
    assert archive.tag_snapshot_ids["old"] in {s.snapshot_id for s in catalog.load_table(TABLE).metadata.snapshots}


@pytest.mark.parametrize("crash", ["expire.after-plan", "expire.after-commit"])
def test_sigkill_in_phase_1_then_rerun_resumes(
    tmp_path: Path, catalog: Any, settings: Settings, store: StateStore, clock: ManualClock, crash: str,
) -> None:
    _small(catalog, clock)
    before = catalog.load_table(TABLE).metadata
    expected = set(select_ids(before, clock))
    config = write_config(tmp_path / "lifecycle.toml", settings)
    env = cli_env(config, LIFECYCLE_FAKE_NOW=clock.now().isoformat())
    args = ["run", "expire", "--table", TABLE, "--json"]
    out = run_cli(args, {**env, "LIFECYCLE_CRASH_AT": crash})
    assert out.returncode == -9, out.stderr
    [first] = store.all_open_plans(TABLE)
    assert store.entries(plan_id=first.plan_id) and all(e.eligible_at is None for e in store.entries())

    out = run_cli(args, env)
    assert out.returncode == 0, out.stderr
    after = catalog.load_table(TABLE).metadata
    assert {s.snapshot_id for s in after.snapshots} == {s.snapshot_id for s in before.snapshots} - expected
    assert store.all_open_plans() == []
    pending = store.entries(kind="purge", table_name=TABLE, states=[PENDING])
    assert pending and all(e.eligible_at is not None and e.eligible_at > clock.now() for e in pending)
    landed_plan = store.plan(first.plan_id)
    assert landed_plan is not None
    if crash == "expire.after-commit":   # recognised from the table's metadata: the same plan finishes
        assert landed_plan.state == PLAN_DONE and {e.plan_id for e in pending} == {first.plan_id}
    else:                                # never committed: abandoned, its rows skipped, re-planned
        assert landed_plan.state == "abandoned" and first.plan_id not in {e.plan_id for e in pending}
        assert {e.state for e in store.entries(plan_id=first.plan_id)} == {"skipped"}
    assert len({e.path for e in pending}) == len(pending)


def select_ids(metadata: Any, clock: ManualClock) -> tuple[int, ...]:
    return select_expired(metadata, clock.now(), Retention(30, 1)).expire_ids


@pytest.mark.parametrize(("extra", "needle"), [
    ("", "unknown table"),
    ('[defaults]\nretention_days = -3\n', "retention_days"),
    ('[tables."archive.sda_observations"]\nmin_snapshots_to_keep = 0\n', "min_snapshots_to_keep"),
])
def test_bad_input_exits_2_with_one_line_and_changes_nothing(
    tmp_path: Path, catalog: Any, settings: Settings, store: StateStore, clock: ManualClock, extra: str,
    needle: str,
) -> None:
    _small(catalog, clock)
    before = catalog.load_table(TABLE).metadata_location
    config = write_config(tmp_path / "lifecycle.toml", settings, extra=extra)
    table = "archive.no_such_table" if not extra else TABLE
    for job in ("expire", "purge"):
        out = run_cli(["run", job, "--table", table], cli_env(config))
        assert out.returncode == 2, out
        lines = out.stderr.strip().splitlines()
        assert len(lines) == 1 and needle in lines[0], out.stderr
    assert catalog.load_table(TABLE).metadata_location == before
    assert store.all_open_plans() == [] and store.entries() == []


class _RacingCatalog(SqlCatalog):
    """A real SQL catalog that lets another writer append just before the first expiration commit."""

    raced = False

    def commit_table(self, table: Any, requirements: Any, updates: Any) -> Any:
        if not self.raced and any(type(u).__name__ == "RemoveSnapshotsUpdate" for u in updates):
            self.raced = True
            other = SqlCatalog("archive", **self.properties).load_table(TABLE)
            other.append(make_rows(random.Random(2), "apollo-7", date(2024, 3, 15), 3).cast(
                schema_to_pyarrow(other.schema())))
        return super().commit_table(table, requirements, updates)


def test_a_commit_racing_the_expiration_is_kept_and_the_run_replans(
    settings: Settings, store: StateStore, clock: ManualClock,
) -> None:
    from lifecycle.iceberg.catalog import embedded_properties

    catalog = _RacingCatalog("archive", **embedded_properties(settings))
    _small(catalog, clock)
    ctx = JobContext(settings=settings, catalog=catalog, store=store, clock=clock, limiter=TokenBucket(10**12),
                     db_url=settings.state.database_url, manual=True)
    result = run_expire(ctx, JobRequest("expire", TABLE))
    assert result.status == DONE and result.counts["conflicts"] == 1 and catalog.raced
    table = catalog.load_table(TABLE)
    raced_snapshot = table.metadata.current_snapshot_id
    assert table.metadata.snapshot_by_id(raced_snapshot).summary.operation.value == "append"
    plans = [store.plan(pid) for pid in {e.plan_id for e in store.entries()}]
    assert sorted(p.state for p in plans if p) == ["abandoned", "done"]
    live = reachable_from(table.io, table.metadata, table.metadata.snapshots, ManifestCache()).all_paths()
    pending = store.entries(kind="purge", table_name=TABLE, states=[PENDING])
    assert pending and not {e.path for e in pending} & live


def test_a_scheduled_run_outside_its_window_stops_before_changing_anything(
    catalog: Any, ctx: JobContext, clock: ManualClock, store: StateStore,
) -> None:
    from lifecycle.jobs.base import STOPPED
    from lifecycle.jobs.runtime import execute

    _small(catalog, clock)
    before = catalog.load_table(TABLE).metadata_location
    ctx.manual = False                       # 20:00 UTC: outside 00:00-06:00
    for job in ("expire", "purge"):
        assert execute(ctx, JobRequest(job, TABLE, manual=False)).status == STOPPED
    assert catalog.load_table(TABLE).metadata_location == before and store.entries() == []
    clock.set(datetime(2026, 11, 27, 1, 0, tzinfo=UTC))   # inside the window the same scheduled run works
    assert execute(ctx, JobRequest("expire", TABLE, manual=False)).status == DONE
