"""`expire` (phase 1): plan → plan row and journal rows → one metadata commit → journal rows made eligible.

The purge journal rows (kind="purge") are written WITH the plan, before the commit, but inert: their
`eligible_at` is NULL until the commit is confirmed, so purge never sees them and the orphan scan's
journal guard already protects them. Confirmation sets `eligible_at = confirmed + purge_delay_hours`.
A crash anywhere resumes: an unconfirmed plan is reconciled with the table's metadata (landed → made
eligible; not landed → abandoned, its rows skipped, and the run re-plans).
"""

from __future__ import annotations

import time
from datetime import timedelta

from pyiceberg.exceptions import CommitFailedException

from lifecycle import log, metrics
from lifecycle.errors import CommitConflictError
from lifecycle.expiration.commit import commit_expiration, landed
from lifecycle.expiration.plan import ExpirePlan, plan_expiration
from lifecycle.expiration.retention import Retention, select_expired
from lifecycle.faults import crash_point
from lifecycle.jobs.base import DONE, DRY_RUN, NOTHING_TO_DO, JobContext, JobRequest, JobResult
from lifecycle.reachability_cache import cache_for
from lifecycle.state import models
from lifecycle.state.models import ABANDONED, COMMITTED, COMMITTING, PENDING, PLANNED, SKIPPED, NewEntry, Plan

JOB = "expire"
KIND = "purge"
MAX_ATTEMPTS = 3
_log = log.get("lifecycle.expiration")


def run_expire(ctx: JobContext, req: JobRequest) -> JobResult:
    ts = ctx.table_settings(req.table)
    retention = Retention(ts.retention_days, ts.min_snapshots_to_keep)
    counts: dict[str, int | float] = {"recovered_plans": 0}
    if not req.dry_run:
        ctx.checkpoint(JOB)   # a scheduled run outside 00:00-06:00 stops here, before any recovery
        for open_plan in ctx.store.open_plans(JOB, req.table):
            counts["recovered_plans"] += 1
            _reconcile(ctx, open_plan, ts.purge_delay_hours)
    for _attempt in range(MAX_ATTEMPTS):
        ctx.checkpoint(JOB)
        table = ctx.catalog.load_table(req.table)
        base = table.metadata
        pinned = {p.base_snapshot_id for p in ctx.store.all_open_plans(req.table)
                  if p.base_snapshot_id is not None}
        selection = select_expired(base, ctx.clock.now(), retention, pinned)
        if not selection:
            return JobResult(JOB, req.table, None, NOTHING_TO_DO, counts)
        started = time.monotonic()
        plan = plan_expiration(req.table, table.io, base, table.metadata_location, selection,
                               cache_for(ctx.settings.data_dir))
        metrics.PLAN_DURATION.labels(JOB).observe(time.monotonic() - started)
        counts.update(plan.counts())
        if req.dry_run:
            return JobResult(JOB, req.table, None, DRY_RUN, counts, plan=plan.dry_run())
        ctx.checkpoint(JOB)
        row = ctx.store.create_plan(JOB, req.table, "", plan.payload(), base.current_snapshot_id, req.run_id,
                                    entries={KIND: _entries(plan)})
        crash_point("expire.after-plan")
        ctx.store.transition_plan(row.plan_id, PLANNED, COMMITTING)
        try:
            started = time.monotonic()
            commit_expiration(table, base, plan, row.plan_id)
            metrics.COMMIT_DURATION.labels(JOB).observe(time.monotonic() - started)
        except CommitFailedException as exc:
            _abandon(ctx, row.plan_id, f"concurrent commit: {exc}")
            _log.event("expire.conflict", table=req.table, plan=row.plan_id, error=str(exc))
            counts["conflicts"] = counts.get("conflicts", 0) + 1
            continue
        crash_point("expire.after-commit")
        _confirm(ctx, row.plan_id, ts.purge_delay_hours)
        metrics.SNAPSHOTS_EXPIRED.labels(req.table).inc(len(selection.expire_ids))
        return JobResult(JOB, req.table, None, DONE, counts, detail=[f"plan {row.plan_id}"])
    raise CommitConflictError(f"expire {req.table}: {MAX_ATTEMPTS} attempts lost to concurrent commits; "
                              "nothing expired, the next run re-plans")


def _entries(plan: ExpirePlan) -> list[NewEntry]:
    return [NewEntry(f.path, f.bytes, None, {"file": f.kind, "snapshot_ids": list(f.snapshot_ids)})
            for f in plan.files]


def _confirm(ctx: JobContext, plan_id: str, delay_hours: int) -> None:
    """The commit landed: make the plan's purge rows eligible `delay_hours` from now, mark the plan done."""
    confirmed = ctx.clock.now()
    ctx.store.transition_plan(plan_id, (PLANNED, COMMITTING, COMMITTED), COMMITTED,
                              {"committed_at": confirmed.isoformat()})
    with ctx.store.transaction() as cur:
        cur.execute("UPDATE journal SET eligible_at = %s, updated_at = %s WHERE plan_id = %s AND kind = %s"
                    " AND eligible_at IS NULL", (confirmed + timedelta(hours=delay_hours), confirmed, plan_id, KIND))
    ctx.store.transition_plan(plan_id, COMMITTED, models.DONE)


def _abandon(ctx: JobContext, plan_id: str, reason: str) -> None:
    pending = [e.entry_id for e in ctx.store.entries(plan_id=plan_id, kind=KIND, states=[PENDING])]
    ctx.store.transition_entries(pending, PENDING, SKIPPED, {"reason": reason})
    ctx.store.transition_plan(plan_id, (PLANNED, COMMITTING), ABANDONED, {"reason": reason})


def _reconcile(ctx: JobContext, plan: Plan, delay_hours: int) -> None:
    if plan.state == COMMITTED:
        _confirm(ctx, plan.plan_id, delay_hours)
        return
    metadata = ctx.catalog.load_table(plan.table_name).metadata
    if landed(metadata, plan.plan_id, list(plan.payload.get("expire_ids", []))):
        _log.event("expire.recovered", table=plan.table_name, plan=plan.plan_id, landed=True)
        _confirm(ctx, plan.plan_id, delay_hours)
        metrics.SNAPSHOTS_EXPIRED.labels(plan.table_name).inc(len(plan.payload.get("expire_ids", [])))
    else:
        _log.event("expire.recovered", table=plan.table_name, plan=plan.plan_id, landed=False)
        _abandon(ctx, plan.plan_id, "commit did not land before a crash; re-planned")
