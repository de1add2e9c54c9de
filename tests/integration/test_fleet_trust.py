# ruff: noqa: F811  (the fleet fixtures are imported from test_fleet.py)
"""The fleet trusts nothing it receives (issue #15), through real `celery worker` processes and a real Redis:
one partition has one lock whatever its field order; forged messages are refused, acknowledged, counted and
leave no run; a partition that keeps killing its worker is quarantined across messages."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import psycopg
import redis

from lifecycle.clock import OffsetClock, SystemClock
from lifecycle.iceberg.catalog import open_catalog
from lifecycle.state.runs import RunStore
from lifecycle.state.store import StateStore
from lifecycle_cli.synth import ArchiveSpec, create_table
from tests.conftest import run_cli, wait_for
from tests.integration.test_fleet import (  # noqa: F401  (fixtures)
    TABLE,
    Fleet,
    files_per_partition,
    make_fleet,
    queues_drained,
    redis_db,
    sample,
    send,
    signed,
)

CANONICAL = "mission_id=apollo-7,day=2024-03-15"
SWAPPED = "day=2024-03-15,mission_id=apollo-7"
EVENING = "2026-11-26T20:00:00+00:00"   # compaction allowed, expiration window closed
NOON = "2026-11-26T12:00:00+00:00"      # compaction paused, expiration window closed


def _all_runs(fleet: Fleet) -> list[tuple[str, str, str, str, int]]:
    with psycopg.connect(fleet.db_url) as conn:
        rows = conn.execute("SELECT run_id, job, table_name, partition, attempts FROM job_runs ORDER BY run_id")
        return [tuple(r) for r in rows.fetchall()]  # type: ignore[misc]


def test_two_field_orders_of_one_partition_take_one_lock_and_the_table_stays_readable(
    make_fleet: Callable[..., Fleet], redis_db: redis.Redis,
) -> None:
    fleet = make_fleet(budget=60_000)                                # ~3 s per partition: the two overlap
    worker = fleet.start_worker(concurrency=2, LIFECYCLE_FAKE_NOW=EVENING)
    assert CANONICAL in fleet.archive.data_files
    rows_before = fleet.table().scan().to_arrow().num_rows
    for partition in (SWAPPED, CANONICAL):                           # scheduled messages, as the fan-out sends
        send("lifecycle.compact", "compaction", table=TABLE, partition=partition, manual=False)

    def settled() -> bool:
        return queues_drained(redis_db) and all(r["state"] != "running" for r in fleet.runs())

    wait_for(settled, timeout=120, what="both messages handled\n" + worker.log_text())
    runs = fleet.runs()
    assert {r["partition"] for r in runs} == {CANONICAL}, runs      # one text for the partition
    contention = sample(worker.metrics(), "lifecycle_lock_contention_total", job="compact") or 0
    assert len(runs) + contention == 2, (runs, contention)          # the other found the same lock held
    table = fleet.table()
    assert table.scan().to_arrow().num_rows == rows_before          # the table scans, every row there
    assert files_per_partition(table)[CANONICAL] == 1
    for task in table.scan().plan_files():
        assert Path(task.file.file_path.removeprefix("file://")).exists()


def test_forged_messages_are_refused_acknowledged_counted_and_leave_no_run(
    make_fleet: Callable[..., Fleet], redis_db: redis.Redis,
) -> None:
    fleet = make_fleet(files=3)
    catalog = open_catalog(fleet.settings)
    create_table(catalog, ArchiveSpec(name="outside_the_set", partitions=[]))   # real, but not configured
    store = StateStore(fleet.db_url, SystemClock())
    victim = RunStore(store)
    victim.ensure("victim-run", "expire", TABLE, "", manual=False)
    victim.start("victim-run", "lifecycle@elsewhere:1")
    worker = fleet.start_worker(concurrency=2, LIFECYCLE_FAKE_NOW=NOON)
    bogus = [f"archive.t{uuid.uuid4().hex[:10]}" for _ in range(50)]
    for name in bogus:                                                           # random table names
        send("lifecycle.compact", "compaction", table=name, partition=None, manual=False)
    send("lifecycle.expire", "expiration", table="archive.outside_the_set", manual=False)
    send("lifecycle.expire", "expiration", table=TABLE, partition=CANONICAL, manual=False)
    send("lifecycle.purge", "expiration", table=TABLE, manual=True)             # bypass the window, unsigned
    send("lifecycle.purge", "expiration", table=TABLE, manual=True, run_id="purge-x", auth="4102444800." + "0" * 64)
    send("lifecycle.compact", "compaction", table=TABLE, partition=CANONICAL, manual=False, run_id="victim-run")
    send("lifecycle.compact", "compaction", **signed(fleet.settings, "compact", table=TABLE, partition=CANONICAL,
                                                     manual=False, run_id="victim-run"))
    send("lifecycle.compact", "compaction", table=TABLE, partition=CANONICAL, manual="yes")
    send("lifecycle.plan-compaction", "control", table=TABLE, manual=True)      # fan-out in the pause, unsigned
    expected = {"unknown-table": 50, "table-not-in-fleet": 1, "partition-on-table-job": 1, "unsigned": 3,
                "bad-signature": 1, "run-id-mismatch": 1, "bad-field": 1}

    def counted() -> str | None:
        text = worker.metrics()
        got = {r: sample(text, "lifecycle_messages_rejected_total", reason=r) for r in expected}
        return text if queues_drained(redis_db) and got == expected else None

    text = wait_for(counted, timeout=120, what=f"{sum(expected.values())} rejections\n" + worker.log_text())
    assert _all_runs(fleet) == [("victim-run", "expire", TABLE, "", 1)]        # no row, the victim untouched
    assert all(name not in text for name in bogus)                              # no series per bogus name
    assert "archive.outside_the_set" not in text
    log = Path(worker.log).read_text(errors="replace")
    assert log.count("task.rejected") == sum(expected.values()), log[-3000:]     # logged once each
    assert redis_db.llen("compaction") == 0                                      # the unsigned fan-out sent nothing
    store.close()


def test_a_partition_that_keeps_killing_its_worker_is_quarantined_across_messages_until_released(
    make_fleet: Callable[..., Fleet], redis_db: redis.Redis,
) -> None:
    fleet = make_fleet(files=3)
    env = {**fleet.env(), "LIFECYCLE_FAKE_NOW": EVENING}   # the CLI on the worker's clock: quarantines cool off
    worker = fleet.start_worker(concurrency=1, LIFECYCLE_FAKE_NOW=EVENING, LIFECYCLE_CRASH_AT="compact.after-stage")
    send("lifecycle.compact", "compaction", table=TABLE, partition=CANONICAL, manual=False)

    def quarantined() -> list[dict[str, object]] | None:
        out = run_cli(["quarantine", "list", "--json"], env)
        assert out.returncode == 0, out.stderr
        rows: list[dict[str, object]] = json.loads(out.stdout)["quarantined"]
        return rows or None

    rows = wait_for(quarantined, timeout=180, interval=1.0, what="the partition quarantined\n" + worker.log_text())
    assert [(r["job"], r["table"], r["partition"]) for r in rows] == [("compact", TABLE, CANONICAL)]
    assert rows[0]["failures"] == fleet.settings.fleet.quarantine_after_failures
    wait_for(lambda: queues_drained(redis_db), timeout=60, what="the message acknowledged")
    runs_before = len(fleet.runs())

    # a fresh message for it, as the fan-out sends every 5 minutes: refused, no new run
    send("lifecycle.compact", "compaction", table=TABLE, partition=SWAPPED, manual=False)
    wait_for(lambda: sample(worker.metrics(), "lifecycle_messages_rejected_total", reason="quarantined") == 1,
             timeout=60, what="the fresh message refused\n" + worker.log_text())
    assert len(fleet.runs()) == runs_before
    assert sample(worker.metrics(), "lifecycle_quarantines_total", job="compact") == 1
    status = run_cli(["status"], env)
    assert status.returncode == 0 and "quarantined: 1" in status.stdout and CANONICAL in status.stdout, status
    # the fan-out skips it (the other partitions are still planned)
    from lifecycle.compaction.fanout import fanout_plan
    from lifecycle.state.quarantine import quarantined_partitions

    store = StateStore(fleet.db_url, OffsetClock(datetime.fromisoformat(EVENING) - datetime.now(UTC)))
    ts = fleet.settings.for_table(TABLE)
    skip = quarantined_partitions(store, "compact", TABLE, fleet.settings)
    planned, _ = fanout_plan(fleet.table(), TABLE, ts, skip=skip)
    assert CANONICAL not in planned and planned == sorted(set(fleet.archive.data_files) - {CANONICAL})

    released = run_cli(["quarantine", "release", "compact", "--table", TABLE, "--partition", SWAPPED], env)
    assert released.returncode == 0 and f"released compact {TABLE} [{CANONICAL}]" in released.stdout, released
    assert quarantined_partitions(store, "compact", TABLE, fleet.settings) == set()
    assert run_cli(["quarantine", "list", "--json"], env).stdout.strip() == '{"quarantined": []}'
    store.close()
