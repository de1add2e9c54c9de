"""`expire` (phase 1): plan → plan row and journal rows → one metadata commit → journal rows made eligible.

The purge journal rows (kind="purge") are written WITH the plan, before the commit, but inert: their
`eligible_at` is NULL until the commit is confirmed, so purge never sees them and the orphan scan's
journal guard already protects them. Confirmation sets `eligible_at = confirmed + purge_delay_hours`.
A crash anywhere resumes: an unconfirmed plan is reconciled with the table's metadata (landed → made
eligible; not landed → abandoned, its rows skipped, and the run re-plans).
"""

from __future__ import annotations

from datetime import timedelta

from pyiceberg.table import Table

from lifecycle import log, metrics
from lifecycle.errors import LifecycleError
from lifecycle.expiration.commit import commit_expiration, expiration_visible
from lifecycle.expiration.plan import ExpirePlan, plan_expiration
from lifecycle.expiration.retention import Retention, select_expired
from lifecycle.expiration.verify import check_refs
from lifecycle.iceberg.reachability_cache import cache_for
from lifecycle.jobs.base import JobContext, JobRequest, JobResult
from lifecycle.jobs.driver import Counts, Finished, Planned, drive
from lifecycle.safety.landed import settled
from lifecycle.safety.paths import PathSet
from lifecycle.state import models
from lifecycle.state.models import (
    ABANDONED,
    COMMITTED,
    COMMITTING,
    PENDING,
    PLANNED,
    PURGE,
    SKIPPED,
    UNKNOWN,
    NewEntry,
    Plan,
    PlanState,
)

JOB = "expire"
KIND = PURGE
MAX_ATTEMPTS = 3
_log = log.get("lifecycle.expiration")


class Expire:
    """expire (phase 1) as an operation of the shared job skeleton (lifecycle/jobs/driver.py)."""

    job, attempts, stages = JOB, MAX_ATTEMPTS, False

    def recover(self, ctx: JobContext, name: str, table: Table) -> Counts:
        delay = ctx.table_settings(name).purge_delay_hours
        open_plans = ctx.store.open_plans(JOB, name)
        for open_plan in open_plans:
            _reconcile(ctx, open_plan, delay)
        return {"recovered_plans": len(open_plans)}

    def plan(self, ctx: JobContext, req: JobRequest, table: Table) -> Planned[ExpirePlan]:
        ts = ctx.table_settings(req.table)
        pinned = {p.base_snapshot_id for p in ctx.store.all_open_plans(req.table) if p.base_snapshot_id is not None}
        selection = select_expired(table.metadata, ctx.clock.now(), Retention(ts.retention_days,
                                                                              ts.min_snapshots_to_keep), pinned)
        if not selection:
            return Planned(None)
        plan = plan_expiration(req.table, table.io, table.metadata, table.metadata_location, selection,
                               cache_for(ctx.settings.data_dir))
        return Planned(plan, dict(plan.counts()), plan.dry_run())

    def journal(self, ctx: JobContext, req: JobRequest, table: Table, plan: ExpirePlan) -> Plan:
        return ctx.store.create_plan(JOB, req.table, "", plan.payload(), table.metadata.current_snapshot_id,
                                     req.run_id, entries={KIND: _entries(plan)})

    def execute(self, ctx: JobContext, table: Table, plan: ExpirePlan, row: Plan) -> Counts:
        return {}

    def commit(self, ctx: JobContext, table: Table, plan: ExpirePlan, row: Plan) -> None:
        commit_expiration(table, table.metadata, plan, row.plan_id)

    def abandon(self, ctx: JobContext, table: Table, row: Plan, state: PlanState, reason: str) -> None:
        _abandon(ctx, row.plan_id, reason)

    def finish(self, ctx: JobContext, table: Table, plan: ExpirePlan, row: Plan) -> Finished:
        metrics.SNAPSHOTS_EXPIRED.labels(row.table_name).inc(len(plan.selection.expire_ids))
        _confirm(ctx, row.plan_id, ctx.table_settings(row.table_name).purge_delay_hours)
        return Finished({}, [f"plan {row.plan_id}"])


def run_expire(ctx: JobContext, req: JobRequest) -> JobResult:
    return drive(Expire(), ctx, req)


def _entries(plan: ExpirePlan) -> list[NewEntry]:
    return [NewEntry(f.path, f.bytes, None, {"file": f.kind, "snapshot_ids": list(f.snapshot_ids)})
            for f in plan.files]


def _confirm(ctx: JobContext, plan_id: str, delay_hours: int) -> None:
    """The commit landed: check no ref vanished beyond the plan's (lifecycle.expiration.verify), then make the
    plan's purge rows eligible `delay_hours` (plus the clock-skew margin) from now and mark the plan done.
    Rows a lost ref still reads stay inert (never purged) and the run fails naming the ref."""
    plan = ctx.store.plan(plan_id)
    assert plan is not None
    table = ctx.catalog.load_table(plan.table_name)
    check = check_refs(table, plan_id, plan.payload.get("expired_refs", []))
    confirmed = ctx.clock.now()
    ctx.store.transition_plan(plan_id, (PLANNED, COMMITTING, COMMITTED, UNKNOWN), COMMITTED,
                              {"committed_at": confirmed.isoformat()})
    held = PathSet(check.held_paths, ctx.schemes())
    rows = ctx.store.entries(plan_id=plan_id, kind=KIND, states=[PENDING])
    # undecidable: hold every row; else only what a lost ref reads
    eligible = [] if check.undecidable is not None else [e.entry_id for e in rows if e.path not in held]
    skew = timedelta(seconds=ctx.settings.fleet.max_clock_skew_seconds)
    ctx.store.make_eligible(eligible, confirmed + timedelta(hours=delay_hours) + skew)
    if check.ok:
        ctx.store.transition_plan(plan_id, COMMITTED, models.DONE)
        return
    reason = (f"refs lost by the commit: {', '.join(f'{n} -> snapshot {i}' for n, i in sorted(check.lost.items()))}"
              if check.lost else str(check.undecidable))
    ctx.store.transition_plan(plan_id, COMMITTED, models.FAILED,
                              {"held": len(rows) - len(eligible), "reason": reason,
                               "metadata_before_commit": check.before_location})
    _log.error("expire.refs_lost", table=plan.table_name, plan=plan_id, reason=reason,
               held=len(rows) - len(eligible), metadata_before_commit=check.before_location)
    raise LifecycleError(f"expire {plan.table_name}: {reason}; {len(rows) - len(eligible)} file(s) they read are"
                         f" held and never purged; the table as it was is in {check.before_location}")


def _abandon(ctx: JobContext, plan_id: str, reason: str) -> None:
    pending = [e.entry_id for e in ctx.store.entries(plan_id=plan_id, kind=KIND, states=[PENDING])]
    ctx.store.transition_entries(pending, PENDING, SKIPPED, {"reason": reason})
    ctx.store.transition_plan(plan_id, (PLANNED, COMMITTING, UNKNOWN), ABANDONED, {"reason": reason})


def _reconcile(ctx: JobContext, plan: Plan, delay_hours: int) -> None:
    if plan.state == COMMITTED:
        _confirm(ctx, plan.plan_id, delay_hours)
        return
    metadata = ctx.catalog.load_table(plan.table_name).metadata
    if expiration_visible(metadata, plan.plan_id, list(plan.payload.get("expire_ids", []))):
        _log.event("expire.recovered", table=plan.table_name, plan=plan.plan_id, landed=True)
        metrics.SNAPSHOTS_EXPIRED.labels(plan.table_name).inc(len(plan.payload.get("expire_ids", [])))
        _confirm(ctx, plan.plan_id, delay_hours)
    elif plan.state in (COMMITTING, UNKNOWN) and not settled(ctx.catalog, plan.updated_at, ctx.clock.now()):
        _log.event("expire.unsettled", table=plan.table_name, plan=plan.plan_id)   # may still land: wait
    else:
        _log.event("expire.recovered", table=plan.table_name, plan=plan.plan_id, landed=False)
        _abandon(ctx, plan.plan_id, "commit did not land before a crash; re-planned")
