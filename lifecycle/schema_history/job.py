"""`compact-schema-history` for one table: recover → plan → journal → one commit → delete dropped files."""

from __future__ import annotations

from pyiceberg.table import Table

from lifecycle import log, metrics
from lifecycle.errors import CommitConflictError
from lifecycle.faults import crash_point
from lifecycle.jobs.base import DONE, DRY_RUN, NOTHING_TO_DO, JobContext, JobRequest, JobResult, load_recovered
from lifecycle.safety.commit import as_commit_error
from lifecycle.schema_history.commit import DELETE_KIND, commit_history, delete_dropped, removals_visible
from lifecycle.schema_history.plan import JOB, plan_history
from lifecycle.state import models as m
from lifecycle.state.models import NewEntry

_log = log.get("lifecycle.schema_history")


def run(ctx: JobContext, req: JobRequest) -> JobResult:
    table, counts = load_recovered(ctx, req, recover)
    plan = plan_history(req.table, table.metadata, table.metadata_location, table.io,
                        ctx.table_settings(req.table).metadata_log_max)
    summary: dict[str, int | float] = {
        "schemas_removed": len(plan.schemas_removed), "specs_removed": len(plan.specs_removed),
        "metadata_files_dropped": len(plan.metadata_files_dropped),
    }
    if plan.empty:
        return JobResult(JOB, req.table, None, NOTHING_TO_DO, counts,
                         plan=plan.to_dict() if req.dry_run else None)
    if req.dry_run:
        return JobResult(JOB, req.table, None, DRY_RUN, summary, plan=plan.to_dict())
    entries = [NewEntry(p) for p in plan.metadata_files_dropped]
    stored = ctx.store.create_plan(JOB, req.table, "", plan.to_dict(), table.metadata.current_snapshot_id,
                                   run_id=req.run_id, entries={DELETE_KIND: entries})
    ctx.checkpoint(JOB)
    ctx.store.transition_plan(stored.plan_id, m.PLANNED, m.COMMITTING)
    try:
        commit_history(ctx.catalog, table, plan)
    except Exception as exc:
        err = as_commit_error(exc, f"{JOB} {req.table}")
        if isinstance(err, CommitConflictError):   # surely did not land: its files stay in the log
            _abandon(ctx, stored.plan_id, m.COMMITTING)
        else:
            ctx.store.transition_plan(stored.plan_id, m.COMMITTING, m.UNKNOWN, {"error": str(err)[:500]})
        raise err from exc
    ctx.store.transition_plan(stored.plan_id, m.COMMITTING, m.COMMITTED)
    crash_point("compact-schema-history.after-commit")
    deleted, skipped = delete_dropped(ctx, req.table, stored.plan_id)
    ctx.store.transition_plan(stored.plan_id, m.COMMITTED, m.DONE, {"deleted": deleted, "skipped": skipped})
    metrics.METADATA_REMOVED.labels(req.table, "schema").inc(len(plan.schemas_removed))
    metrics.METADATA_REMOVED.labels(req.table, "partition-spec").inc(len(plan.specs_removed))
    metrics.METADATA_REMOVED.labels(req.table, "metadata-file").inc(deleted)
    counts.update(summary)
    counts["metadata_files_deleted"] = deleted
    return JobResult(JOB, req.table, None, DONE, counts, detail=[f"plan {stored.plan_id}"])


def _abandon(ctx: JobContext, plan_id: str, state: str) -> None:
    pending = ctx.store.entries(plan_id=plan_id, kind=DELETE_KIND, states=[m.PENDING])
    ctx.store.transition_entries([e.entry_id for e in pending], m.PENDING, m.SKIPPED, info={"reason": "not landed"})
    ctx.store.transition_plan(plan_id, state, m.ABANDONED)


def recover(ctx: JobContext, name: str, table: Table) -> dict[str, int]:
    """Landed → delete what left the log, done; not landed → abandoned (its files are still in the log)."""
    out = {"plans_recovered": 0}
    for plan in ctx.store.open_plans(JOB, name):
        if removals_visible(table.metadata, plan.payload):
            if plan.state != m.COMMITTED:
                ctx.store.transition_plan(plan.plan_id, plan.state, m.COMMITTED)
            deleted, skipped = delete_dropped(ctx, name, plan.plan_id)
            ctx.store.transition_plan(plan.plan_id, m.COMMITTED, m.DONE, {"deleted": deleted, "skipped": skipped})
        else:
            _abandon(ctx, plan.plan_id, plan.state)
        out["plans_recovered"] += 1
        _log.event("schema-history.recovered", table=name, plan_id=plan.plan_id, state=plan.state)
    return out
