"""Thin tasks: each turns a message (job, table name, partition text) into a call of lifecycle/.

One task per job (readable names in Flower: `lifecycle.compact`, `lifecycle.expire`, ...), the compaction
planning task that fans out per partition, and the reaper. Messages carry names and ids, never objects.
"""

from __future__ import annotations

import dataclasses
import os
import threading
import uuid
from typing import Any

from celery.exceptions import Reject, SoftTimeLimitExceeded

from lifecycle import log, metrics
from lifecycle.bandwidth import process_limiter
from lifecycle.clock import default_clock
from lifecycle.compaction.fanout import fanout_plan
from lifecycle.fleet.bandwidth_redis import fleet_limiter
from lifecycle.fleet.execution import message_run_id, run_fleet_job
from lifecycle.fleet.reaper import reap
from lifecycle.iceberg.catalog import all_tables
from lifecycle.jobs.admission import PLAN, RequestRejected, admit_message, sign_message
from lifecycle.jobs.base import JOB_NAMES, STOPPED, JobContext, JobRequest
from lifecycle.settings import Settings, load
from lifecycle.state.models import JobRun
from lifecycle.state.prune import prune
from lifecycle.state.quarantine import Quarantine, quarantined_partitions
from lifecycle.state.runs import run_id_for
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
        from lifecycle.jobs.runtime import build_context

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


def _rejected(job: str, exc: RequestRejected) -> dict[str, Any]:
    """A refused message: acknowledged (the task returns), logged once, counted by reason; nothing ran."""
    metrics.MESSAGES_REJECTED.labels(exc.reason).inc()
    _log.warning("task.rejected", job=job, reason=exc.reason, error=str(exc)[:300])
    return {"job": job, "status": "rejected", "reason": exc.reason}


def run_job(task: Any, job: str, fields: dict[str, Any]) -> dict[str, Any]:
    ctx = context()
    try:
        req = admit_message(ctx.settings, ctx.catalog, job, fields)
        run_id = req.run_id or message_run_id(job, req.table, req.partition, task.request.id)
        if fields.get("source") == "beat":
            metrics.BEAT_EMISSIONS.labels(job).inc()
        result = run_fleet_job(ctx, JobRequest(job, req.table, req.partition, manual=req.manual, run_id=run_id))
    except RequestRejected as exc:
        return _rejected(job, exc)
    except SoftTimeLimitExceeded:
        _log.warning("task.soft_time_limit", job=job, table=fields.get("table"), partition=fields.get("partition"))
        raise
    _log.event("task.done", job=job, table=req.table, partition=req.partition, run_id=run_id,
               status=result.status, counts=result.counts)
    if result.status == STOPPED and SHUTDOWN.is_set():
        # stopped by this worker's shutdown, not by a window: give the message back so another worker resumes
        raise Reject("worker shutting down; the run resumes elsewhere", requeue=True)
    return result.to_dict()


def _fields(args: tuple[Any, ...], fields: dict[str, Any]) -> dict[str, Any]:
    """The message's fields; a positional argument may only be the table (as a direct call passes it)."""
    if len(args) == 1 and "table" not in fields:
        return {"table": args[0], **fields}
    if args:
        return {**fields, "positional": args}  # refused by the validation as an unexpected field
    return fields


def _job_task(job: str) -> Any:
    def task(self: Any, *args: Any, **fields: Any) -> dict[str, Any]:
        return run_job(self, job, _fields(args, fields))

    task.__name__ = task.__qualname__ = job.replace("-", "_")
    task.__doc__ = f"Run `{job}` on one table" + (" partition" if job == "compact" else "") + "."
    return app.task(name=JOB_TASKS[job], bind=True, queue=JOB_QUEUES[job])(task)


JOB_TASK_OBJECTS = {job: _job_task(job) for job in JOB_TASKS}


def _settings() -> Settings:
    from workers.app import settings

    return settings


def send_job(job: str, table: str, partition: str | None = None, manual: bool = True,
             run_id: str | None = None, expires: float | None = None, producer: Any = None) -> str:
    """Send one job message to its queue; returns the task id. Pass a `producer` to reuse one connection
    across many sends (the fan-out). A manual message, or one naming its run, is signed with the fleet secret
    and always names its run (a replay of it is the same run, never a new one)."""
    kwargs: dict[str, Any] = {"table": table, "partition": partition, "manual": manual}
    if manual and not run_id:
        run_id = run_id_for(job, table, partition or "", uuid.uuid4().hex)
    if run_id:
        kwargs["run_id"] = run_id
        kwargs["auth"] = sign_message(_settings(), job, table, partition, manual, run_id)
    result = JOB_TASK_OBJECTS[job].apply_async(
        kwargs=kwargs, queue=JOB_QUEUES[job], expires=expires,
        kwargsrepr=_describe(job, table, partition) + (" manual" if manual else ""), producer=producer,
    )
    return str(result.id)


def _plan_compaction(self: Any, *args: Any, **fields: Any) -> list[str] | dict[str, Any]:
    """Split a table's compaction into one task per candidate partition on the `compaction` queue."""
    ctx = context()
    try:
        req = admit_message(ctx.settings, ctx.catalog, PLAN, _fields(args, fields))
    except RequestRejected as exc:
        return _rejected(PLAN, exc)
    table, manual = req.table, req.manual
    if fields.get("source") == "beat":
        metrics.BEAT_EMISSIONS.labels("compact").inc()
    if not manual and not dataclasses.replace(ctx, manual=False).window_open("compact"):
        _log.event("plan.window_closed", table=table)
        return []
    ts = ctx.settings.for_table(table)
    tbl = ctx.catalog.load_table(table)
    partitions, backlog = fanout_plan(tbl, table, ts, skip=quarantined_partitions(ctx.store, "compact", table,
                                                                                  ctx.settings))
    metrics.SMALL_FILE_BACKLOG.labels(table).set(backlog)
    # one producer, and kombu's publish batch: on Redis the messages go out as pipelined LPUSHes, FANOUT_BATCH
    # at a time, instead of one round trip (and one new client) per message. If a flush fails the task fails
    # and is redelivered; a partition sent twice is harmless (its lock serialises the runs, the second finds
    # nothing left to compact).
    with app.producer_or_acquire() as producer, producer.batch(max_size=FANOUT_BATCH):
        ids = [send_job("compact", table, p, manual=manual, expires=None if manual else PARTITION_TASK_EXPIRES,
                        producer=producer) for p in partitions]
    _log.event("plan.fanout", table=table, partitions=len(partitions), task_ids=len(ids))
    return ids


plan_compaction: Any = app.task(name=PLAN_COMPACTION_TASK, bind=True, queue="control")(_plan_compaction)


def send_plan_compaction(table: str, manual: bool = True) -> str:
    kwargs: dict[str, Any] = {"table": table, "manual": manual}
    if manual:
        kwargs["auth"] = sign_message(_settings(), PLAN, table, None, manual, None)
    result = plan_compaction.apply_async(kwargs=kwargs, queue="control",
                                         kwargsrepr=f"job=compact table={table} (plan)")
    return str(result.id)


def _reap_runs() -> dict[str, Any]:
    """Re-send dead runs (never the queued or out-of-window ones), end exhausted ones failed, prune old state
    rows, refresh the quarantine gauge (lifecycle/fleet/reaper.py)."""
    ctx = context()

    def enqueue(run: JobRun) -> str:
        return send_job(run.job, run.table_name, run.partition or None, manual=run.manual, run_id=run.run_id)

    report = dataclasses.asdict(reap(ctx.store, ctx.db_url, enqueue, settings=ctx.settings))
    report["pruned"] = prune(ctx.store, ctx.settings)
    Quarantine.of(ctx.store, ctx.settings).observe(JOB_NAMES)
    return report


reap_runs: Any = app.task(name=REAP_TASK, queue="control")(_reap_runs)
