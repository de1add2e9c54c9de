"""`rewrite-manifests` for one table: recover → plan → journal → write manifests → one `replace` commit."""

from __future__ import annotations

import random
from typing import Any

from pyiceberg.exceptions import CommitFailedException, ValidationException
from pyiceberg.table import Table

from lifecycle import log, metrics
from lifecycle.errors import CommitConflictError, CommitOutcomeUnknownError
from lifecycle.faults import crash_point
from lifecycle.jobs.base import DONE, DRY_RUN, NOTHING_TO_DO, JobContext, JobRequest, JobResult, load_recovered
from lifecycle.manifests.commit import commit_rewrite, landed, manifest_list_path
from lifecycle.manifests.execute import STAGE_KIND, read_entries, write_manifests
from lifecycle.manifests.plan import JOB, ManifestPlan, current_manifests, plan_rewrite
from lifecycle.state import models as m
from lifecycle.state.models import NewEntry, Plan

_log = log.get("lifecycle.manifests")
MAX_ATTEMPTS = 3


def run(ctx: JobContext, req: JobRequest) -> JobResult:
    table, counts = load_recovered(ctx, req, recover)
    for _attempt in range(MAX_ATTEMPTS):
        manifests = current_manifests(table.io, table.metadata)
        plan = plan_rewrite(req.table, table.metadata, manifests, ctx.table_settings(req.table).manifest_target_bytes)
        if plan is None or plan.compact:
            counts["data_manifests"] = plan.data_manifests if plan else 0
            return JobResult(JOB, req.table, None, NOTHING_TO_DO, counts,
                             plan=plan.to_dict() if plan and req.dry_run else None)
        if req.dry_run:
            return JobResult(JOB, req.table, None, DRY_RUN, {"data_manifests": plan.data_manifests,
                                                             "max_manifests_after": plan.bound}, plan=plan.to_dict())
        try:
            return _execute(ctx, req, table, plan, manifests, counts)
        except CommitFailedException as exc:
            _log.warning("rewrite-manifests.conflict", table=req.table, error=str(exc))
            table = table.refresh()
    raise CommitConflictError(f"rewrite-manifests {req.table}: the table kept changing; {MAX_ATTEMPTS} attempts")


def _execute(ctx: JobContext, req: JobRequest, table: Table, plan: ManifestPlan, manifests: list[Any],
             counts: dict[str, int | float]) -> JobResult:
    snapshot_id = random.SystemRandom().randrange(1, 2**63 - 1)
    stored = ctx.store.create_plan(JOB, req.table, "", {**plan.to_dict(), "snapshot_id": snapshot_id},
                                   plan.base_snapshot_id, run_id=req.run_id)
    plan_id = stored.plan_id
    ctx.store.transition_plan(plan_id, m.PLANNED, m.EXECUTING)
    entries = read_entries(ctx, table, manifests)
    new = write_manifests(ctx, table, plan, plan_id, snapshot_id, entries)
    ctx.checkpoint(JOB)
    ctx.store.add_entries(plan_id, req.table, STAGE_KIND,
                          [NewEntry(manifest_list_path(table, plan_id, snapshot_id), info={"manifest_list": True})])
    ctx.store.transition_plan(plan_id, m.EXECUTING, m.COMMITTING, {"manifests_written": len(new)})
    try:
        snap = commit_rewrite(ctx.catalog, table, ctx.clock, plan_id, snapshot_id, manifests, new)
    except (CommitFailedException, ValidationException):
        remove_staged(ctx, table, plan_id)       # the commit surely did not land
        ctx.store.transition_plan(plan_id, m.COMMITTING, m.ABANDONED)
        raise
    except Exception as exc:
        ctx.store.transition_plan(plan_id, m.COMMITTING, m.UNKNOWN, {"error": f"{type(exc).__name__}: {exc}"})
        raise CommitOutcomeUnknownError(f"rewrite-manifests {req.table}: commit outcome unknown: {exc}") from exc
    crash_point("rewrite-manifests.after-commit")
    _finish(ctx, stored, snap.snapshot_id)
    metrics.MANIFESTS_REWRITTEN.labels(req.table).inc(plan.data_manifests)
    counts.update({"manifests_replaced": plan.data_manifests, "manifests_written": len(new),
                   "entries": sum(len(v) for v in entries.values()), "snapshots_committed": 1})
    return JobResult(JOB, req.table, None, DONE, counts, detail=[f"snapshot {snap.snapshot_id}, plan {plan_id}"])


def _finish(ctx: JobContext, plan: Plan, snapshot_id: int) -> None:
    staged = ctx.store.entries(plan_id=plan.plan_id, kind=STAGE_KIND, states=[m.PENDING, m.WRITTEN])
    ctx.store.transition_entries([e.entry_id for e in staged], [m.PENDING, m.WRITTEN], m.COMMITTED)
    ctx.store.transition_plan(plan.plan_id, [m.COMMITTING, m.UNKNOWN, m.COMMITTED], m.DONE,
                              {"snapshot_id": snapshot_id})


def remove_staged(ctx: JobContext, table: Table, plan_id: str) -> int:
    """Delete a plan's staged manifests and manifest list (inside the table location only)."""
    location = table.location().rstrip("/") + "/"
    staged = ctx.store.entries(plan_id=plan_id, kind=STAGE_KIND, states=[m.PENDING, m.WRITTEN])
    for e in staged:
        if not e.path.startswith(location):
            continue
        try:
            table.io.delete(e.path)
        except FileNotFoundError:
            pass                                   # never written, or already gone: done
    ctx.store.transition_entries([e.entry_id for e in staged], [m.PENDING, m.WRITTEN], m.REMOVED)
    return len(staged)


def recover(ctx: JobContext, name: str, table: Table) -> dict[str, int]:
    """Reconcile unfinished plans: landed → done; not landed → staged files removed, plan abandoned."""
    out = {"plans_recovered": 0, "staged_removed": 0}
    for plan in ctx.store.open_plans(JOB, name):
        snap = landed(table.metadata, plan.plan_id)
        if snap is not None:
            if plan.state in (m.PLANNED, m.EXECUTING):
                ctx.store.transition_plan(plan.plan_id, plan.state, m.COMMITTING)
            _finish(ctx, ctx.store.plan(plan.plan_id) or plan, snap.snapshot_id)
        else:
            out["staged_removed"] += remove_staged(ctx, table, plan.plan_id)
            ctx.store.transition_plan(plan.plan_id, plan.state, m.ABANDONED)
        out["plans_recovered"] += 1
        _log.event("rewrite-manifests.recovered", table=name, plan_id=plan.plan_id, landed=snap is not None)
    return out
