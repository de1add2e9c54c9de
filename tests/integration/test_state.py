"""The state store on real PostgreSQL: migrations, compare-and-swap, advisory locks, writer heartbeats."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from datetime import timedelta

import psycopg
import pytest

from lifecycle.clock import ManualClock
from lifecycle.errors import LockLostError, StaleStateError
from lifecycle.state import migrations
from lifecycle.state.locks import AdvisoryLock
from lifecycle.state.models import DONE, EXECUTING, PLANNED, NewEntry
from lifecycle.state.store import StateStore
from lifecycle.state.writers import WriterHeartbeat, active_writers, all_writers
from tests.conftest import wait_for


def test_migrations_run_twice_are_a_no_op(db_url: str) -> None:
    with psycopg.connect(db_url, autocommit=True) as conn:
        first = migrations.upgrade(conn)
        tables = conn.execute("SELECT count(*) FROM pg_tables WHERE schemaname = 'public'").fetchone()
        second = migrations.upgrade(conn)
        again = conn.execute("SELECT count(*) FROM pg_tables WHERE schemaname = 'public'").fetchone()
        versions = conn.execute("SELECT version FROM schema_migrations ORDER BY version").fetchall()
    assert first and first[0] == "0001_init.sql"
    assert second == []
    assert tables == again
    assert [v[0] for v in versions] == [m[0] for m in migrations.available()]
    with psycopg.connect(db_url) as conn:
        cols = conn.execute(
            "SELECT column_name, data_type FROM information_schema.columns"
            " WHERE table_name = 'writer_heartbeats' ORDER BY ordinal_position").fetchall()
    assert cols == [("writer_id", "text"), ("host", "text"), ("started_at", "timestamp with time zone"),
                    ("last_heartbeat_at", "timestamp with time zone"), ("in_progress_paths", "ARRAY")]


def test_plan_and_journal_transitions_are_checked(store: StateStore, clock: ManualClock) -> None:
    plan = store.create_plan("compact", "archive.t", "p=1", {"groups": 1}, base_snapshot_id=42,
                             entries={"stage": [NewEntry("file:///w/a.parquet", 10), NewEntry("file:///w/b.parquet")]})
    assert plan.state == PLANNED and plan.created_at == clock.now()
    clock.advance(timedelta(minutes=1))
    moved = store.transition_plan(plan.plan_id, PLANNED, EXECUTING, progress={"group": 0})
    assert moved.state == EXECUTING and moved.progress == {"group": 0} and moved.updated_at == clock.now()
    with pytest.raises(StaleStateError, match="expected state planned, found executing"):
        store.transition_plan(plan.plan_id, PLANNED, DONE)
    assert store.plan(plan.plan_id).state == EXECUTING  # type: ignore[union-attr]

    entries = store.entries(plan_id=plan.plan_id, kind="stage")
    assert [e.path for e in entries] == ["file:///w/a.parquet", "file:///w/b.parquet"]
    assert store.transition_entries([entries[0].entry_id], "pending", "written") == 1
    with pytest.raises(StaleStateError, match="1 of 2 entries were not in state pending"):
        store.transition_entries([e.entry_id for e in entries], "pending", "written")
    # the refused batch changed nothing
    assert [e.state for e in store.entries(plan_id=plan.plan_id)] == ["written", "pending"]
    assert store.open_plans("compact", "archive.t") == [store.plan(plan.plan_id)]
    assert store.guarded_paths("archive.t", ["stage"], ["pending", "written"]) == {
        "file:///w/a.parquet", "file:///w/b.parquet"}


def test_concurrent_transitions_exactly_one_wins(store: StateStore, db_url: str, clock: ManualClock) -> None:
    plan = store.create_plan("expire", "archive.t", "", {}, None)
    other = StateStore(db_url, clock, upgrade=False)
    try:
        store.transition_plan(plan.plan_id, PLANNED, EXECUTING)
        with pytest.raises(StaleStateError):
            other.transition_plan(plan.plan_id, PLANNED, EXECUTING)
    finally:
        other.close()


_HOLDER = textwrap.dedent("""
    import sys, time
    from lifecycle.state.locks import AdvisoryLock
    with AdvisoryLock(sys.argv[1], "compact", "archive.t", "p=1") as lock:
        print("acquired" if lock.acquired else "busy", flush=True)
        if lock.acquired:
            sys.stdin.readline()   # hold until told (or killed)
""")


def _holder(db_url: str) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-c", _HOLDER, db_url], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True)


def test_two_processes_contend_and_exactly_one_gets_the_lock(db_url: str) -> None:
    first = _holder(db_url)
    try:
        assert first.stdout is not None and first.stdout.readline().strip() == "acquired"
        second = _holder(db_url)
        assert second.stdout is not None and second.stdout.readline().strip() == "busy"
        assert second.wait(timeout=30) == 0
        with AdvisoryLock(db_url, "compact", "archive.t", "p=1") as mine:
            assert not mine.acquired
        with AdvisoryLock(db_url, "compact", "archive.t", "p=2") as other_partition:
            assert other_partition.acquired
    finally:
        first.kill()
        first.wait()


def test_sigkill_of_the_holder_frees_the_lock_within_seconds(db_url: str) -> None:
    holder = _holder(db_url)
    assert holder.stdout is not None and holder.stdout.readline().strip() == "acquired"
    os.kill(holder.pid, signal.SIGKILL)
    holder.wait()

    def free() -> bool:
        with AdvisoryLock(db_url, "compact", "archive.t", "p=1") as lock:
            return lock.acquired

    wait_for(free, timeout=10, what="the killed holder's lock to be released")


def test_lock_knows_when_its_connection_died(db_url: str) -> None:
    with AdvisoryLock(db_url, "expire", "archive.t") as lock:
        assert lock.acquired and lock.alive()
        with psycopg.connect(db_url, autocommit=True) as admin:
            admin.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                          " WHERE application_name LIKE 'lifecycle-lock:%'")
        assert not lock.alive()
        with pytest.raises(LockLostError, match="lost"):
            lock.ensure_alive()
    with AdvisoryLock(db_url, "expire", "archive.t") as again:
        assert again.acquired


def test_heartbeat_helper_creates_refreshes_and_removes_its_row(db_url: str, store: StateStore) -> None:
    clock = ManualClock(store.clock.now())
    with (
        WriterHeartbeat(db_url, writer_id="writer-1", interval_seconds=0.05, clock=clock,
                        paths=["file:///w/data/tmp-1/"]) as hb,
        psycopg.connect(db_url) as conn,
    ):
        rows = all_writers(conn)
        assert [w.writer_id for w in rows] == ["writer-1"]
        assert rows[0].in_progress_paths == ("file:///w/data/tmp-1/",)
        first = rows[0].last_heartbeat_at
        clock.advance(timedelta(seconds=30))
        wait_for(lambda: all_writers(conn)[0].last_heartbeat_at > first, timeout=10,  # type: ignore[operator]
                 what="a background heartbeat")
        hb.set_paths(["file:///w/data/tmp-2/"])
        assert all_writers(conn)[0].in_progress_paths == ("file:///w/data/tmp-2/",)
        assert [w.writer_id for w in active_writers(conn, clock, ttl_seconds=300)] == ["writer-1"]
        later = ManualClock(clock.now() + timedelta(seconds=301))
        assert active_writers(conn, later, ttl_seconds=300) == []
    with psycopg.connect(db_url) as conn:
        assert all_writers(conn) == []


def test_purge_backlog_gauge_reports_the_oldest_overdue_entry(store: StateStore, clock: ManualClock) -> None:
    from prometheus_client import REGISTRY

    from lifecycle.fleet.reaper import observe_purge_backlog

    plan = store.create_plan("expire", "archive.pb", "", {}, None, entries={"purge": [
        NewEntry("file:///w/old.avro", 1, eligible_at=clock.now() - timedelta(hours=3)),
        NewEntry("file:///w/new.avro", 1, eligible_at=clock.now() + timedelta(hours=3)),
    ]})
    assert observe_purge_backlog(store) == {"archive.pb": 3 * 3600.0}
    assert REGISTRY.get_sample_value("lifecycle_purge_journal_oldest_eligible_age_seconds",
                                     {"table": "archive.pb"}) == 3 * 3600.0
    old = store.entries(plan_id=plan.plan_id, kind="purge")[0]
    store.transition_entries([old.entry_id], "pending", "deleted")
    assert observe_purge_backlog(store) == {"archive.pb": 0.0}
