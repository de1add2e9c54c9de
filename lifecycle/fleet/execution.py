"""Fleet execution around `runtime.execute`: deterministic job runs, capped attempts and run heartbeats.
Called by the Celery tasks; never imports celery.
"""

from __future__ import annotations

import dataclasses
import threading

from lifecycle import log, metrics
from lifecycle.errors import StaleStateError
from lifecycle.jobs.admission import RequestRejected
from lifecycle.jobs.base import LOCKED, NOTHING_TO_DO, JobContext, JobRequest, JobResult
from lifecycle.jobs.specs import lock_kind
from lifecycle.state.locks import AdvisoryLock
from lifecycle.state.models import JobRun
from lifecycle.state.quarantine import Quarantine
from lifecycle.state.runs import DONE, FAILED, QUEUED, RUNNING, RunStore, run_id_for

_log = log.get("lifecycle.fleet.execution")

ALREADY_FINISHED = "already-finished"   # a redelivery of a run that already ended: acknowledged, nothing done
ATTEMPTS_EXHAUSTED = "attempts-exhausted"


def message_run_id(job: str, table: str, partition: str | None, message_id: str) -> str:
    """One run per message: a redelivery of the same message names the same run."""
    return run_id_for(job, table, partition or "", message_id)


class _Heartbeat:
    """Keeps the run's heartbeat fresh while the job runs, so the reaper can tell a dead run from a slow one."""

    def __init__(self, runs: RunStore, run_id: str, every: float) -> None:
        self._runs, self._run_id, self._every = runs, run_id, every
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name=f"run-heartbeat-{run_id}", daemon=True)

    def _loop(self) -> None:
        while not self._stop.wait(self._every):
            try:
                self._runs.heartbeat(self._run_id)
            except Exception as exc:  # a missed heartbeat is not fatal; the lock decides
                _log.event("run.heartbeat_failed", run_id=self._run_id, error=str(exc))

    def __enter__(self) -> _Heartbeat:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)


def _exhaust(ctx: JobContext, runs: RunStore, req: JobRequest, run_id: str, attempts: int,
             tracker: Quarantine) -> JobResult:
    """Too many attempts: end the run failed (under its lock, so a live holder is never overruled)."""
    kind = lock_kind(req.job)
    partition = (req.partition or "") if kind == req.job else ""
    with AdvisoryLock(ctx.db_url, kind, req.table, partition) as lock:
        if not lock.acquired:
            metrics.LOCK_CONTENTION.labels(req.job).inc()
            return JobResult(req.job, req.table, req.partition, LOCKED)
        run = runs.get(run_id)
        if run is None or run.state not in (QUEUED, RUNNING):
            return JobResult(req.job, req.table, req.partition, ALREADY_FINISHED)
        error = f"gave up after {attempts} attempts (the run kept dying)"
        runs.finish(run_id, FAILED, error=error, expected=(QUEUED, RUNNING))
        tracker.end(req.job, req.table, req.partition or "", run_id, ok=False, error=error)
    metrics.JOB_FAILED_FINAL.labels(req.job).inc()
    metrics.JOB_RUNS.labels(req.job, req.table, FAILED).inc()
    _log.event("run.attempts_exhausted", run_id=run_id, job=req.job, table=req.table, partition=req.partition)
    return JobResult(req.job, req.table, req.partition, ATTEMPTS_EXHAUSTED, detail=[f"{attempts} attempts"])


def _check_run(run: JobRun | None, req: JobRequest) -> None:
    """A message naming an existing run must name that run's own job, table and partition."""
    if run is not None and (run.job, run.table_name, run.partition) != (req.job, req.table, req.partition or ""):
        raise RequestRejected("run-id-mismatch", f"run {req.run_id} belongs to {run.job} on {run.table_name}"
                                                 f" {run.partition}".rstrip())


def run_fleet_job(ctx: JobContext, req: JobRequest) -> JobResult:
    """Execute one admitted message's job run (lifecycle/jobs/admission.py validated it): skip a finished run, cap
    attempts, refuse a quarantined key, heartbeat while running. RequestRejected: nothing ran, no row."""
    from lifecycle.jobs.runtime import execute

    assert req.run_id, "fleet runs carry a deterministic run id"
    runs = RunStore(ctx.store)
    run = runs.get(req.run_id)
    _check_run(run, req)
    attempts = Quarantine.of(ctx.store, ctx.settings)
    poison = attempts.blocked(req.job, req.table, req.partition or "")
    if poison is not None:
        raise RequestRejected("quarantined", f"{req.job} {req.table} {req.partition or ''} is quarantined after"
                                             f" {poison.failures} failures (lifecycle-cli quarantine list)")
    if run is not None and run.state in (DONE, FAILED):
        _log.event("run.duplicate", run_id=req.run_id, state=run.state)
        return JobResult(req.job, req.table, req.partition, ALREADY_FINISHED)
    if run is not None and run.state in (QUEUED, RUNNING) and run.attempts >= run.max_attempts:
        return _exhaust(ctx, runs, req, req.run_id, run.attempts, attempts)
    job_ctx = dataclasses.replace(ctx, manual=req.manual, lock=None)
    if not req.manual and not job_ctx.window_open(req.job):  # scheduled: the window is checked at start
        return JobResult(req.job, req.table, req.partition, NOTHING_TO_DO,
                         detail=[f"outside its window at {ctx.clock.now():%H:%M} UTC; the next tick continues"])
    try:
        with _Heartbeat(runs, req.run_id, ctx.settings.fleet.run_heartbeat_seconds):
            return execute(job_ctx, req, attempts=attempts)
    except StaleStateError:
        after = runs.get(req.run_id)
        if after is not None and after.state in (DONE, FAILED):  # a duplicate finished it meanwhile
            return JobResult(req.job, req.table, req.partition, ALREADY_FINISHED)
        raise
