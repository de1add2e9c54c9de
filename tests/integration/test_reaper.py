"""The reaper against real PostgreSQL: dead, queued and out-of-window runs told apart; two reapers never re-send
one run twice; a run is re-sent at most once per staleness period."""

from __future__ import annotations

import dataclasses
import itertools
import threading
from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any

from lifecycle.clock import ManualClock
from lifecycle.fleet.reaper import reap
from lifecycle.state.runs import RunStore
from lifecycle.state.store import StateStore

TABLE = "archive.sda_observations"
STALE = timedelta(minutes=5)


def _dead_runs(runs: RunStore, n: int, manual: bool = True, job: str = "compact") -> list[str]:
    ids = []
    for i in range(n):
        run_id = f"{job}-dead-{i:03d}"
        runs.ensure(run_id, job, TABLE, f"p={i}" if job == "compact" else "", manual=manual)
        runs.start(run_id, "lifecycle@gone:1")
        ids.append(run_id)
    return ids


def test_a_second_reaper_sweeping_in_between_never_makes_the_first_re_send_a_run_again(
    ctx: Any, clock: ManualClock,
) -> None:
    runs = RunStore(ctx.store)
    ids = _dead_runs(runs, 12)
    clock.advance(timedelta(minutes=10))
    sent: list[str] = []
    other = StateStore(ctx.db_url, clock)

    def enqueue_a(run: Any) -> str:
        sent.append(run.run_id)
        if len(sent) == 1:   # reaper B runs a whole sweep after A listed the runs and re-sent the first
            reap(other, ctx.db_url, lambda r: sent.append(r.run_id) or "b", stale=STALE)
        return "a"

    reap(ctx.store, ctx.db_url, enqueue_a, stale=STALE)
    other.close()
    assert Counter(sent) == dict.fromkeys(ids, 1)
    assert all(r.state == "queued" and r.requeues == 1 for r in runs.open_runs())


def test_two_reapers_at_once_send_each_dead_run_once(ctx: Any, clock: ManualClock) -> None:
    runs = RunStore(ctx.store)
    ids = _dead_runs(runs, 40)
    clock.advance(timedelta(minutes=10))
    sent: list[str] = []
    guard = threading.Lock()
    start = threading.Barrier(2)

    def sweep() -> None:
        store = StateStore(ctx.db_url, clock)

        def enqueue(run: Any) -> str:
            with guard:
                sent.append(run.run_id)
            return "t"

        start.wait()
        reap(store, ctx.db_url, enqueue, stale=STALE)
        store.close()

    threads = [threading.Thread(target=sweep) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert Counter(sent) == dict.fromkeys(ids, 1)


def test_a_scheduled_run_that_died_is_not_re_sent_while_its_window_is_closed(ctx: Any, clock: ManualClock) -> None:
    runs = RunStore(ctx.store)
    clock.set(datetime(2026, 11, 27, 5, 50, tzinfo=UTC))              # a scheduled purge dies at 05:50
    (run_id,) = _dead_runs(runs, 1, manual=False, job="purge")
    clock.set(datetime(2026, 11, 27, 7, 0, tzinfo=UTC))
    sent: list[str] = []
    reports = []
    for _ in range(24):                                                # one sweep a minute, 07:00-07:24
        reports.append(reap(ctx.store, ctx.db_url, lambda r: sent.append(r.run_id) or "t", stale=STALE,
                            settings=ctx.settings))
        clock.advance(timedelta(minutes=1))
    assert sent == []
    assert [r.waiting for r in reports if r.waiting] == [[run_id]]
    run = runs.get(run_id)
    assert run is not None and run.state == "stopped" and "window" in (run.error or "")


def test_a_queued_run_is_re_sent_at_most_once_per_staleness_period(ctx: Any, clock: ManualClock) -> None:
    runs = RunStore(ctx.store)
    (run_id,) = _dead_runs(runs, 1)                                   # manual: windows do not apply
    clock.advance(timedelta(minutes=6))
    sent: list[datetime] = []
    queued = 0
    for _ in range(24 * 6):                                            # a sweep every 10 s for 24 minutes;
        report = reap(ctx.store, ctx.db_url, lambda r: sent.append(clock.now()) or "t", stale=STALE)
        queued += getattr(report, "queued", None) == [run_id]           # no worker ever takes the message
        clock.advance(timedelta(seconds=10))
    assert 4 <= len(sent) <= 5 and queued > 100
    assert all(b - a >= STALE for a, b in itertools.pairwise(sent))
    run = runs.get(run_id)
    assert run is not None and run.state == "queued" and run.requeues == len(sent)


def test_a_dead_scheduled_run_inside_its_window_is_re_sent(ctx: Any, clock: ManualClock) -> None:
    runs = RunStore(ctx.store)
    clock.set(datetime(2026, 11, 27, 1, 0, tzinfo=UTC))
    (run_id,) = _dead_runs(runs, 1, manual=False, job="purge")
    clock.advance(timedelta(minutes=6))
    sent: list[str] = []
    settings = dataclasses.replace(ctx.settings)
    report = reap(ctx.store, ctx.db_url, lambda r: sent.append(r.run_id) or "t", stale=STALE, settings=settings)
    assert sent == [run_id] and report.requeued == [run_id]


def test_held_locks_report_the_64_bit_keys_and_a_second_taker_is_refused(ctx: Any) -> None:
    import psycopg

    from lifecycle.state.locks import AdvisoryLock, held_locks

    parts = [f"mission_id=m,day=2024-03-{d:02d}" for d in range(1, 29)]
    locks = [AdvisoryLock(ctx.db_url, "compact", TABLE, p).__enter__() for p in parts]
    try:
        assert all(lk.acquired for lk in locks)
        assert any(not -2**31 <= lk.key < 2**31 for lk in locks)
        with psycopg.connect(ctx.db_url, autocommit=True) as conn:
            held = held_locks(conn)
        assert sorted(h["key"] for h in held) == sorted(lk.key for lk in locks)
        assert all(h["holder"].startswith(f"lifecycle-lock:compact:{TABLE}") for h in held)
        with AdvisoryLock(ctx.db_url, "compact", TABLE, parts[0]) as again:
            assert not again.acquired
    finally:
        for lk in locks:
            lk.release()
