"""Build a job context from settings and execute one job request under its advisory lock.

The CLI and the Celery tasks both call `execute`, so a manual run and a fleet run run the same code.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from lifecycle import log, metrics
from lifecycle.bandwidth import Limiter, process_limiter
from lifecycle.clock import Clock, default_clock
from lifecycle.errors import LifecycleError, StopRequested
from lifecycle.iceberg import reachability
from lifecycle.iceberg.catalog import open_catalog
from lifecycle.identity import worker_id
from lifecycle.jobs import admission
from lifecycle.jobs.base import LOCKED, STOPPED, JobContext, JobRequest, JobResult, Status
from lifecycle.jobs.formats import check_request
from lifecycle.jobs.registry import JobFn, runner
from lifecycle.jobs.specs import lock_kind
from lifecycle.lineage import guard_catalog
from lifecycle.settings import Settings
from lifecycle.state.db import database_url
from lifecycle.state.locks import AdvisoryLock
from lifecycle.state.quarantine import Quarantine
from lifecycle.state.runs import RunStore
from lifecycle.state.store import StateStore

_log = log.get("lifecycle.jobs.runtime")


@dataclass
class Runtime:
    settings: Settings
    context: JobContext

    def close(self) -> None:
        self.context.store.close()


def build_context(
    settings: Settings, clock: Clock | None = None, limiter: Limiter | None = None, manual: bool = True,
) -> JobContext:
    clock = clock or default_clock()
    url = database_url(settings)
    store = StateStore(url, clock)
    # The fleet's own commits pass the lineage gate too; staged files of a refused commit stay with the job's
    # journal (which removes or reconciles them); the gate deletes nothing by default.
    catalog = guard_catalog(open_catalog(settings))
    return JobContext(
        settings=settings, catalog=catalog, store=store, clock=clock,
        limiter=limiter or process_limiter(settings), db_url=url, manual=manual,
    )


def validate_request(ctx: JobContext, job: str, table: str, partition: str | None) -> tuple[str, str | None]:
    """Bad input is refused before anything changes (lifecycle/jobs/admission.py: the one validation of every
    entry point): unknown job, a table outside the fleet's set, a malformed partition."""
    return admission.validate_request(ctx.settings, ctx.catalog, job, table, partition)


def _trim_caches() -> None:
    """Bound a long-lived worker's manifest caches by one run's working set; never fails the run."""
    try:
        reachability.trim_process_caches()
    except Exception as exc:  # a cache is only a cache
        _log.warning("cache.trim_failed", error=str(exc))


def _run(fn: JobFn, ctx: JobContext, request: JobRequest) -> JobResult:
    """The job itself, after the one check of what PyIceberg can write (a refusal fails the run, changes nothing)."""
    check_request(ctx, request)
    return fn(ctx, request)


QUARANTINED = Status.QUARANTINED


def execute(ctx: JobContext, request: JobRequest, on_locked: Callable[[], None] | None = None,
            attempts: Quarantine | None = None) -> JobResult:
    """Take the job's advisory lock, run it, record the run. A held lock → status `locked`. With `attempts`
    (fleet runs), each attempt is counted per (job, table, partition) and a poison key is refused."""
    fn = runner(request.job)
    kind = lock_kind(request.job)
    lock_partition = (request.partition or "") if kind == request.job else ""
    key = (request.job, request.table, request.partition or "")
    runs = RunStore(ctx.store)
    run_id = request.run_id or f"{request.job}-manual-{uuid.uuid4().hex[:12]}"
    started = time.monotonic()
    with AdvisoryLock(ctx.db_url, kind, request.table, lock_partition) as lock:
        if not lock.acquired:
            metrics.LOCK_CONTENTION.labels(request.job).inc()
            _log.event("job.locked", job=request.job, table=request.table, partition=request.partition)
            if on_locked:
                on_locked()
            return JobResult(request.job, request.table, request.partition, LOCKED)
        where: dict[str, Any] = {"job": request.job, "table": request.table, "partition": request.partition}
        if request.dry_run:
            ctx.lock = lock
            try:
                result = _run(fn, ctx, request)
                _log.event("job.dry_run", **where, status=result.status, counts=result.counts)
                return result
            finally:
                ctx.lock = None
        runs.ensure(run_id, request.job, request.table, request.partition or "", request.manual)
        runs.start(run_id, worker_id())
        _log.event("job.start", **where, run_id=run_id, manual=request.manual)
        outcome = "failed"
        if attempts is not None and (poison := attempts.begin(*key, run_id)) is not None:
            why = f"quarantined after {poison.failures} failed attempts; last: {poison.last_error}"
            runs.finish(run_id, "failed", error=why)
            metrics.JOB_RUNS.labels(request.job, request.table, QUARANTINED).inc()
            return JobResult(request.job, request.table, request.partition, QUARANTINED, detail=[why])
        ctx.lock = lock
        try:
            result = _run(fn, ctx, request)
            outcome = result.status
            runs.finish(run_id, "done", result.counts)
            _log.event("job.finish", **where, run_id=run_id, status=result.status, counts=result.counts,
                       seconds=round(time.monotonic() - started, 3))
            if attempts is not None:
                attempts.end(*key, run_id, ok=True)
            return result
        except StopRequested as stop:
            outcome = STOPPED
            runs.finish(run_id, "stopped", error=str(stop))
            _log.event("job.finish", **where, run_id=run_id, status=STOPPED, reason=str(stop),
                       seconds=round(time.monotonic() - started, 3))
            if attempts is not None:
                attempts.end(*key, run_id, ok=None)
            return JobResult(request.job, request.table, request.partition, STOPPED, detail=[str(stop)])
        except BaseException as exc:
            error = f"{type(exc).__name__}: {exc}"
            if lock.alive():
                runs.finish(run_id, "failed", error=error)
                if attempts is not None:
                    attempts.end(*key, run_id, ok=False, error=error)
            refused = isinstance(exc, LifecycleError) and exc.exit_code == 2  # bad input: the caller says it
            loud = ctx.log_failures and not refused
            _log.event("job.failed", logging.ERROR if loud else logging.INFO, **where, run_id=run_id,
                       error=error[:2000], seconds=round(time.monotonic() - started, 3))
            raise
        finally:
            ctx.lock = None
            metrics.JOB_RUNS.labels(request.job, request.table, outcome).inc()
            metrics.JOB_DURATION.labels(request.job).observe(time.monotonic() - started)
            _trim_caches()
