"""The reaper: find job runs whose heartbeat went stale while nobody holds their lock, and re-enqueue them.

A run whose attempts are used up ends `failed` (counted in `lifecycle_job_attempts_exhausted_total`) instead of
looping. The caller passes `enqueue`, which sends a message for the run (the Celery task does; lifecycle/
never imports celery). Re-enqueueing refreshes the heartbeat, so the next sweep waits a full period again.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta

from lifecycle import log, metrics
from lifecycle.state.locks import AdvisoryLock, lock_kind
from lifecycle.state.models import JobRun
from lifecycle.state.runs import FAILED, RUNNING, RunStore
from lifecycle.state.store import StateStore

_log = log.get("lifecycle.reaper")

Enqueue = Callable[[JobRun], str]


def stale_after() -> timedelta:
    """A run is stale when its heartbeat is older than this (default 5 minutes; 20 heartbeats)."""
    return timedelta(seconds=float(os.environ.get("LIFECYCLE_RUN_STALE_SECONDS", "300")))


@dataclass
class ReapReport:
    requeued: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    busy: list[str] = field(default_factory=list)     # stale heartbeat but the lock is held: still alive


def observe_purge_backlog(store: StateStore) -> dict[str, float]:
    """Set `lifecycle_purge_journal_oldest_eligible_age_seconds{table}`: how long the oldest eligible purge
    entry (not yet deleted or skipped) has waited; 0 when none is overdue. Returns the values set."""
    now = store.clock.now()
    with store.cursor() as cur:
        cur.execute(
            "SELECT table_name, min(eligible_at) FILTER (WHERE state IN ('pending', 'copied')"
            " AND eligible_at <= %s) AS oldest FROM journal WHERE kind = 'purge' GROUP BY table_name", (now,))
        rows = cur.fetchall()
    ages = {r["table_name"]: (now - r["oldest"]).total_seconds() if r["oldest"] else 0.0 for r in rows}
    for table, age in ages.items():
        metrics.PURGE_OVERDUE_AGE.labels(table).set(age)
    return ages


def reap(store: StateStore, db_url: str, enqueue: Enqueue, stale: timedelta | None = None) -> ReapReport:
    """Re-enqueue stale runs (or end exhausted ones failed); also refresh the purge-backlog gauge."""
    observe_purge_backlog(store)
    runs = RunStore(store)
    now = store.clock.now()
    stale = stale or stale_after()
    report = ReapReport()
    for run in runs.open_runs():
        if run.state != RUNNING or run.heartbeat_at is None or now - run.heartbeat_at < stale:
            continue
        kind = lock_kind(run.job)
        partition = run.partition if kind == run.job else ""
        with AdvisoryLock(db_url, kind, run.table_name, partition) as lock:
            if not lock.acquired:
                report.busy.append(run.run_id)
                continue
            if run.attempts >= run.max_attempts:
                runs.finish(run.run_id, FAILED, error=f"gave up after {run.attempts} attempts (heartbeat went stale)")
                metrics.JOB_FAILED_FINAL.labels(run.job).inc()
                metrics.JOB_RUNS.labels(run.job, run.table_name, FAILED).inc()
                report.failed.append(run.run_id)
                _log.event("reaper.failed", run_id=run.run_id, attempts=run.attempts)
                continue
            runs.heartbeat(run.run_id)
        task_id = enqueue(run)
        report.requeued.append(run.run_id)
        _log.event("reaper.requeued", run_id=run.run_id, job=run.job, table=run.table_name,
                   partition=run.partition, task_id=task_id)
    return report
