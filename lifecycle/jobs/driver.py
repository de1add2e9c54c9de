"""The one skeleton of a job that ends in a single table commit: recover → plan → journal → execute → commit →
finish. A job package contributes an `Operation` (its planner, its executor, its commit and how it finishes or
abandons a plan); the order of the steps, the checkpoints, the plan states, the commit's outcome classification
(lifecycle/safety/commit.py) and the re-plan after a lost race live here once, the way Iceberg Java's actions and
delta-rs's operations share one skeleton.

    state of the plan row:  planned → [executing →] committing → (the job's finish: committed/done)
    commit raised:          a conflict (surely not landed) → the operation abandons the plan (what it staged is
                            removed), the table is reloaded and re-planned, at most `attempts` plans in all;
                            anything else (may have landed) → `unknown`, everything kept, the error raised:
                            the next run's `recover` decides from the table itself.

Compaction has its own per-group shape (many groups, a batched committer: lifecycle/compaction/job.py), and the
delete-only jobs (clean-orphans, purge) have no commit; all share lifecycle/safety.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Generic, Protocol, TypeVar

from pyiceberg.table import Table

from lifecycle import log, metrics
from lifecycle.errors import CommitConflictError
from lifecycle.faults import crash_point
from lifecycle.jobs.base import DONE, DRY_RUN, NOTHING_TO_DO, JobContext, JobRequest, JobResult
from lifecycle.safety.commit import as_commit_error
from lifecycle.state.models import Plan, PlanState

P = TypeVar("P")
Counts = dict[str, int | float]
_log = log.get("lifecycle.jobs")


@dataclass(frozen=True)
class Planned(Generic[P]):
    """What a planner found: `plan` None means nothing to do; `counts` go into the result (a dry run's too);
    `preview` is the JSON-ready plan a dry run returns."""

    plan: P | None
    counts: Counts = field(default_factory=dict)
    preview: Any = None


@dataclass(frozen=True)
class Finished:
    counts: Counts
    detail: list[str] = field(default_factory=list)


class Operation(Protocol[P]):
    job: str
    attempts: int          # plans tried when a concurrent commit wins the race (1: the conflict is raised at once)
    stages: bool           # execute() writes files before the commit (plan row passes through `executing`)

    def recover(self, ctx: JobContext, name: str, table: Table) -> Counts:
        """Reconcile this job's unfinished plans with the table (landed → finished; not → abandoned)."""
        ...

    def plan(self, ctx: JobContext, req: JobRequest, table: Table) -> Planned[P]: ...

    def journal(self, ctx: JobContext, req: JobRequest, table: Table, plan: P) -> Plan:
        """The plan row and the journal rows of every file the plan creates or deletes, before any side effect."""
        ...

    def execute(self, ctx: JobContext, table: Table, plan: P, row: Plan) -> Counts:
        """Side effects before the commit (staged files, journaled first); what it returns is kept on the row."""
        ...

    def commit(self, ctx: JobContext, table: Table, plan: P, row: Plan) -> None: ...

    def abandon(self, ctx: JobContext, table: Table, row: Plan, state: PlanState, reason: str) -> None:
        """The commit surely did not land: close the plan and remove what it staged."""
        ...

    def finish(self, ctx: JobContext, table: Table, plan: P, row: Plan) -> Finished:
        """The commit landed: the steps after it (journal rows closed, deletes, metrics), plan row done."""
        ...


def drive(op: Operation[P], ctx: JobContext, req: JobRequest) -> JobResult:
    counts: Counts = {}
    if not req.dry_run:
        ctx.checkpoint(op.job)   # a scheduled run outside its window stops here, before any recovery
        counts.update(op.recover(ctx, req.table, ctx.catalog.load_table(req.table)))
    for _attempt in range(op.attempts):
        ctx.checkpoint(op.job)
        table = ctx.catalog.load_table(req.table)
        started = time.monotonic()
        planned = op.plan(ctx, req, table)
        metrics.PLAN_DURATION.labels(op.job).observe(time.monotonic() - started)
        counts.update(planned.counts)
        if planned.plan is None:
            return JobResult(op.job, req.table, None, NOTHING_TO_DO, counts,
                             plan=planned.preview if req.dry_run else None)
        if req.dry_run:
            return JobResult(op.job, req.table, None, DRY_RUN, counts, plan=planned.preview)
        finished = attempt(op, ctx, req, table, planned.plan, counts)
        if finished is not None:
            counts.update(finished.counts)
            return JobResult(op.job, req.table, None, DONE, counts, detail=finished.detail)
    raise CommitConflictError(f"{op.job} {req.table}: {op.attempts} attempt(s) lost to concurrent commits; "
                              "nothing committed, the next run re-plans")


def attempt(op: Operation[P], ctx: JobContext, req: JobRequest, table: Table, plan: P,
                    counts: Counts) -> Finished | None:
    """One plan through journal → execute → commit → finish; None when a concurrent commit won (re-plan)."""
    ctx.checkpoint(op.job)
    row = op.journal(ctx, req, table, plan)
    crash_point(f"{op.job}.after-plan")
    state = PlanState.PLANNED
    info: Counts = {}
    if op.stages:
        ctx.store.transition_plan(row.plan_id, state, PlanState.EXECUTING)
        state = PlanState.EXECUTING
        info = op.execute(ctx, table, plan, row)
        ctx.checkpoint(op.job)
    ctx.store.transition_plan(row.plan_id, state, PlanState.COMMITTING, dict(info) or None)
    started = time.monotonic()
    try:
        op.commit(ctx, table, plan, row)
    except Exception as exc:
        err = as_commit_error(exc, f"{op.job} {req.table}")
        if not isinstance(err, CommitConflictError):   # may have landed: everything stays for recovery
            ctx.store.transition_plan(row.plan_id, PlanState.COMMITTING, PlanState.UNKNOWN, {"error": str(err)[:500]})
            raise err from exc
        op.abandon(ctx, table, row, PlanState.COMMITTING, f"concurrent commit: {err}"[:500])
        counts["conflicts"] = counts.get("conflicts", 0) + 1
        _log.event(f"{op.job}.conflict", table=req.table, plan=row.plan_id, error=str(err))
        if op.attempts == 1:
            raise err from exc
        return None
    metrics.COMMIT_DURATION.labels(op.job).observe(time.monotonic() - started)
    crash_point(f"{op.job}.after-commit")
    return op.finish(ctx, table, plan, row)
