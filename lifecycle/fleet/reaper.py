"""The reaper: tell dead runs from queued and out-of-window ones, and re-send only the dead.

An open run (queued or running) is left alone while its heartbeat (or its last re-send, for a queued one) is
younger than the staleness period: it is alive, or its message waits in a queue. A stale one is looked at
under its advisory lock: held → busy (alive, only slow to heartbeat). Otherwise, with the run re-read under the
lock: attempts used up → `failed` (`lifecycle_job_attempts_exhausted_total`); a scheduled run whose window is
closed → `stopped` (waiting for its window: beat's next emission resumes from the journal, a re-send now
would only be refused); else it is moved to `queued` by a compare-and-swap on what this sweep saw, and only
the reaper that won the swap sends it. A queued run is therefore re-sent at most once per staleness period,
and two reapers never both re-send it. The caller passes `enqueue` (the Celery task does; lifecycle/ never
imports celery). Each sweep also prunes old state rows (lifecycle/state/prune.py) and refreshes gauges.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from lifecycle import log, metrics
from lifecycle.jobs.specs import lock_kind, scheduled_window_open
from lifecycle.settings import Settings
from lifecycle.state.locks import AdvisoryLock
from lifecycle.state.models import JobRun
from lifecycle.state.runs import FAILED, QUEUED, RUNNING, STOPPED, RunStore
from lifecycle.state.store import StateStore

_log = log.get("lifecycle.fleet.reaper")

Enqueue = Callable[[JobRun], str]


def stale_after(settings: Settings) -> timedelta:
    """A run is stale when its heartbeat is older than `[fleet] run_stale_seconds` (default 5 minutes)."""
    return timedelta(seconds=settings.fleet.run_stale_seconds)


@dataclass
class ReapReport:
    requeued: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    busy: list[str] = field(default_factory=list)     # stale heartbeat but the lock is held: still alive
    alive: list[str] = field(default_factory=list)    # running with a fresh heartbeat
    queued: list[str] = field(default_factory=list)   # re-sent (or created) less than a period ago: in a queue
    waiting: list[str] = field(default_factory=list)  # dead, scheduled, window closed: stopped, not re-sent


def observe_purge_backlog(store: StateStore) -> dict[str, float]:
    """Set `lifecycle_purge_journal_oldest_eligible_age_seconds{table}`: how long the oldest eligible purge
    entry (not yet deleted or skipped) has waited; 0 when none is overdue. Returns the values set."""
    now = store.clock.now()
    ages = {table: (now - oldest).total_seconds() if oldest else 0.0
            for table, oldest in store.oldest_eligible_purge(now).items()}
    for table, age in ages.items():
        metrics.PURGE_OVERDUE_AGE.labels(table).set(age)
    return ages


def _stale(run: JobRun, now: datetime, stale: timedelta) -> bool:
    seen = max(t for t in (run.heartbeat_at, run.requeued_at, run.created_at) if t is not None)
    return now - seen >= stale


def reap(store: StateStore, db_url: str, enqueue: Enqueue, stale: timedelta | None = None,
         settings: Settings | None = None) -> ReapReport:
    """One sweep: classify open runs, re-send the dead ones; refresh the purge-backlog and quarantine gauges."""
    observe_purge_backlog(store)
    runs = RunStore(store)
    stale = stale or stale_after(settings or Settings())
    report = ReapReport()
    for listed in runs.open_runs():
        if not _stale(listed, store.clock.now(), stale):
            (report.queued if listed.state == QUEUED else report.alive).append(listed.run_id)
            continue
        kind = lock_kind(listed.job)
        partition = listed.partition if kind == listed.job else ""
        with AdvisoryLock(db_url, kind, listed.table_name, partition) as lock:
            if not lock.acquired:
                report.busy.append(listed.run_id)
                continue
            run = runs.get(listed.run_id)  # re-checked under the lock: another reaper or a worker may have acted
            if run is None or run.state not in (QUEUED, RUNNING) or not _stale(run, store.clock.now(), stale):
                continue
            if run.attempts >= run.max_attempts:
                runs.finish(run.run_id, FAILED, error=f"gave up after {run.attempts} attempts (heartbeat went stale)",
                            expected=(QUEUED, RUNNING))
                metrics.JOB_FAILED_FINAL.labels(run.job).inc()
                metrics.JOB_RUNS.labels(run.job, run.table_name, FAILED).inc()
                report.failed.append(run.run_id)
                _log.event("reaper.failed", run_id=run.run_id, attempts=run.attempts)
                continue
            if not run.manual and settings is not None and not _window_open(settings, run.job, store.clock.now()):
                runs.finish(run.run_id, STOPPED, error="its worker died; its window is closed: the next scheduled"
                            " run resumes from the journal", expected=(QUEUED, RUNNING))
                report.waiting.append(run.run_id)
                _log.event("reaper.waiting_for_window", run_id=run.run_id, job=run.job, table=run.table_name)
                continue
            if not runs.requeue(run):
                continue
        task_id = enqueue(run)
        report.requeued.append(run.run_id)
        _log.event("reaper.requeued", run_id=run.run_id, job=run.job, table=run.table_name,
                   partition=run.partition, task_id=task_id)
    return report


def _window_open(settings: Settings, job: str, now: datetime) -> bool:
    return scheduled_window_open(job, now, settings.windows.paused(), settings.windows.allowed(),
                                 settings.fleet.max_clock_skew_seconds)
