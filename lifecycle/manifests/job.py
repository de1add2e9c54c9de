"""`rewrite-manifests` for one table: recover → plan → journal → write manifests → one `replace` commit."""

from __future__ import annotations

import random
from typing import Any

from pyiceberg.table import Table

from lifecycle import log, metrics
from lifecycle.errors import CommitConflictError
from lifecycle.faults import crash_point
from lifecycle.jobs.base import DONE, DRY_RUN, NOTHING_TO_DO, JobContext, JobRequest, JobResult, load_recovered
from lifecycle.manifests.commit import commit_rewrite, committed_snapshot, manifest_list_path
from lifecycle.manifests.execute import STAGE_KIND, read_entries, write_manifests
from lifecycle.manifests.plan import JOB, ManifestPlan, current_manifests, plan_rewrite
from lifecycle.safety.commit import as_commit_error
from lifecycle.safety.landed import LiveSets, landed, settled
from lifecycle.safety.staged import remove_staged
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
        except CommitConflictError as exc:   # someone committed since the plan: re-plan on the new head
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
    except Exception as exc:
        err = as_commit_error(exc, f"rewrite-manifests {req.table}")
        if isinstance(err, CommitConflictError):   # surely did not land: what it staged goes
            _abandon(ctx, table, stored, m.COMMITTING, str(err))
        else:                                      # may have landed: everything stays for recovery
            ctx.store.transition_plan(plan_id, m.COMMITTING, m.UNKNOWN, {"error": str(err)[:500]})
        raise err from exc
    crash_point("rewrite-manifests.after-commit")
    _finish(ctx, stored, snap.snapshot_id)
    metrics.MANIFESTS_REWRITTEN.labels(req.table).inc(plan.data_manifests)
    counts.update({"manifests_replaced": plan.data_manifests, "manifests_written": len(new),
                   "entries": sum(len(v) for v in entries.values()), "snapshots_committed": 1})
    return JobResult(JOB, req.table, None, DONE, counts, detail=[f"snapshot {snap.snapshot_id}, plan {plan_id}"])


def _finish(ctx: JobContext, plan: Plan, snapshot_id: int | None) -> None:
    staged = ctx.store.entries(plan_id=plan.plan_id, kind=STAGE_KIND, states=m.STAGED_OPEN_STATES)
    ctx.store.transition_entries([e.entry_id for e in staged], m.STAGED_OPEN_STATES, m.COMMITTED)
    ctx.store.transition_plan(plan.plan_id, [m.COMMITTING, m.UNKNOWN, m.COMMITTED], m.DONE,
                              {"snapshot_id": snapshot_id})


def _abandon(ctx: JobContext, table: Table, plan: Plan, state: str, reason: str) -> int:
    """Closed first (nothing may commit it any more), then its staged manifests removed."""
    ctx.store.transition_plan(plan.plan_id, state, m.ABANDONED, {"reason": reason[:500]})
    return remove_staged(ctx.store, table, plan.table_name, plan.plan_id, ctx.schemes(), JOB)


def recover(ctx: JobContext, name: str, table: Table) -> dict[str, int]:
    """Reconcile unfinished plans from the table itself: a plan whose staged manifests or manifest list any
    retained snapshot still reads landed (done); one that never reached its commit, or whose files nothing
    reads, is abandoned and its staged files removed. An unknown outcome waits until it is settled."""
    out = {"plans_recovered": 0, "staged_removed": 0}
    live = LiveSets()
    for plan in ctx.store.open_plans(JOB, name):
        staged = [e.path for e in ctx.store.entries(plan_id=plan.plan_id, kind=STAGE_KIND)]
        if plan.state in (m.PLANNED, m.EXECUTING):
            outcome = "not committed"
        elif plan.state != m.COMMITTED and not settled(ctx.catalog, plan.updated_at, ctx.clock.now()):
            out["plans_unsettled"] = out.get("plans_unsettled", 0) + 1
            continue
        elif plan.state == m.COMMITTED or landed(table, staged, live, ctx.schemes()):
            outcome = "landed"
        else:
            outcome = "not landed"
        if outcome == "landed":
            snap = committed_snapshot(table.metadata, plan.plan_id)
            _finish(ctx, plan, snap.snapshot_id if snap is not None else None)
        else:
            out["staged_removed"] += _abandon(ctx, table, plan, plan.state, f"recovery: {outcome}")
        out["plans_recovered"] += 1
        _log.event("rewrite-manifests.recovered", table=name, plan_id=plan.plan_id, outcome=outcome)
    for plan_id in ctx.store.closed_plans_with_open_entries(JOB, name, [m.ABANDONED], (STAGE_KIND,),
                                                           m.STAGED_OPEN_STATES):
        out["staged_removed"] += remove_staged(ctx.store, table, name, plan_id, ctx.schemes(), JOB)
    return out
