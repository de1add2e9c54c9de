"""Thin tasks: each turns a message (job, table name, partition text) into a call of lifecycle/.

One task per job (readable names in Flower: `lifecycle.compact`, `lifecycle.expire`, ...), the compaction
planning task that fans out per partition, and the reaper. Messages carry names and ids, never objects.
"""

from __future__ import annotations

import dataclasses
import os
import threading
from typing import Any

from celery.exceptions import Reject, SoftTimeLimitExceeded

from lifecycle import log, metrics
from lifecycle.bandwidth import process_limiter
from lifecycle.bandwidth_redis import fleet_limiter
from lifecycle.catalog import all_tables
from lifecycle.clock import default_clock
from lifecycle.fleet import fanout_plan, message_run_id, run_fleet_job
from lifecycle.jobs.base import STOPPED, JobContext, JobRequest
from lifecycle.reaper import reap
from lifecycle.settings import load
from lifecycle.state.models import JobRun
from workers.app import app
from workers.config import JOB_QUEUES, JOB_TASKS, PLAN_COMPACTION_TASK, REAP_TASK

_log = log.get("workers.tasks")
PARTITION_TASK_EXPIRES = 300.0  # scheduled partition tasks: the next planning tick re-issues a dropped one
FANOUT_BATCH = 500  # fan-out messages per pipelined flush to the broker

SHUTDOWN = threading.Event()  # set when the worker begins a warm shutdown (workers/signals.py)
_context: JobContext | None = None
_context_pid = 0


def context() -> JobContext:
    """This worker process's job context (catalog, state store, limiter), built once after fork."""
    global _context, _context_pid
    if _context is None or _context_pid != os.getpid():
        from lifecycle.runtime import build_context

        settings = load()
        limiter = fleet_limiter(settings) or process_limiter(settings)
        _context = build_context(settings, clock=default_clock(), limiter=limiter, manual=False)
        _context.shutdown = SHUTDOWN
        _context_pid = os.getpid()
        _touch_contract_series(_context)
    return _context


def _touch_contract_series(ctx: JobContext) -> None:
    """Zero-valued series of the four contract metrics for every table, so dashboards see them at once."""
    try:
        tables = all_tables(ctx.catalog, ctx.settings)
    except Exception as exc:  # a catalog hiccup must not stop the worker
        _log.warning("metrics.tables_unavailable", error=str(exc))
        return
    for table in tables:
        for metric in (metrics.FILES_COMPACTED, metrics.SNAPSHOTS_EXPIRED, metrics.ORPHANS_CLEANED,
                       metrics.LINEAGE_FAILURES):
            metric.labels(table)


def _describe(job: str, table: str, partition: str | None) -> str:
    return f"job={job} table={table}" + (f" partition={partition}" if partition else "")


def run_job(task: Any, job: str, table: str, partition: str | None, manual: bool, run_id: str | None,
            source: str | None) -> dict[str, Any]:
    ctx = context()
    if source == "beat":
        metrics.BEAT_EMISSIONS.labels(job).inc()
    run_id = run_id or message_run_id(job, table, partition, task.request.id)
    req = JobRequest(job, table, partition, manual=manual, run_id=run_id)
    try:
        result = run_fleet_job(ctx, req)
    except SoftTimeLimitExceeded:
        _log.warning("task.soft_time_limit", job=job, table=table, partition=partition, run_id=run_id)
        raise
    _log.event("task.done", job=job, table=table, partition=partition, run_id=run_id, status=result.status,
               counts=result.counts)
    if result.status == STOPPED and SHUTDOWN.is_set():
        # stopped by this worker's shutdown, not by a window: give the message back so another worker resumes
        raise Reject("worker shutting down; the run resumes elsewhere", requeue=True)
    return result.to_dict()


def _job_task(job: str) -> Any:
    def task(self: Any, table: str, partition: str | None = None, manual: bool = False,
             run_id: str | None = None, source: str | None = None) -> dict[str, Any]:
        return run_job(self, job, table, partition, manual, run_id, source)

    task.__name__ = task.__qualname__ = job.replace("-", "_")
    task.__doc__ = f"Run `{job}` on one table" + (" partition" if job == "compact" else "") + "."
    return app.task(name=JOB_TASKS[job], bind=True, queue=JOB_QUEUES[job])(task)


JOB_TASK_OBJECTS = {job: _job_task(job) for job in JOB_TASKS}


def send_job(job: str, table: str, partition: str | None = None, manual: bool = True,
             run_id: str | None = None, expires: float | None = None, producer: Any = None) -> str:
    """Send one job message to its queue; returns the task id. Pass a `producer` to reuse one connection
    across many sends (the fan-out)."""
    kwargs: dict[str, Any] = {"table": table, "partition": partition, "manual": manual}
    if run_id:
        kwargs["run_id"] = run_id
    result = JOB_TASK_OBJECTS[job].apply_async(
        kwargs=kwargs, queue=JOB_QUEUES[job], expires=expires,
        kwargsrepr=_describe(job, table, partition) + (" manual" if manual else ""), producer=producer,
    )
    return str(result.id)


def _plan_compaction(self: Any, table: str, manual: bool = False, source: str | None = None) -> list[str]:
    """Split a table's compaction into one task per candidate partition on the `compaction` queue."""
    ctx = context()
    if source == "beat":
        metrics.BEAT_EMISSIONS.labels("compact").inc()
    if not manual and not dataclasses.replace(ctx, manual=False).window_open("compact"):
        _log.event("plan.window_closed", table=table)
        return []
    ts = ctx.settings.for_table(table)
    tbl = ctx.catalog.load_table(table)
    partitions, backlog = fanout_plan(tbl, table, ts)
    metrics.SMALL_FILE_BACKLOG.labels(table).set(backlog)
    # one producer, and kombu's publish batch: on Redis the messages go out as pipelined LPUSHes, FANOUT_BATCH
    # at a time, instead of one round trip (and one new client) per message. If a flush fails the task fails
    # and is redelivered; a partition sent twice is harmless (its lock serialises the runs, the second finds
    # nothing left to compact).
    with app.producer_or_acquire() as producer, producer.batch(max_size=FANOUT_BATCH):
        ids = [send_job("compact", table, p, manual=manual, expires=None if manual else PARTITION_TASK_EXPIRES,
                        producer=producer) for p in partitions]
    _log.event("plan.fanout", table=table, partitions=partitions, task_ids=ids)
    return ids


plan_compaction: Any = app.task(name=PLAN_COMPACTION_TASK, bind=True, queue="control")(_plan_compaction)


def send_plan_compaction(table: str, manual: bool = True) -> str:
    result = plan_compaction.apply_async(kwargs={"table": table, "manual": manual}, queue="control",
                                         kwargsrepr=f"job=compact table={table} (plan)")
    return str(result.id)


def _reap_runs() -> dict[str, list[str]]:
    """Re-enqueue runs whose heartbeat went stale while nobody holds their lock; end exhausted ones failed."""
    ctx = context()

    def enqueue(run: JobRun) -> str:
        return send_job(run.job, run.table_name, run.partition or None, manual=run.manual, run_id=run.run_id)

    report = reap(ctx.store, ctx.db_url, enqueue)
    return dataclasses.asdict(report)


reap_runs: Any = app.task(name=REAP_TASK, queue="control")(_reap_runs)
