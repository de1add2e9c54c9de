"""`compact-schema-history` for one table: recover → plan → journal → one commit → delete dropped files, on the
shared job skeleton (lifecycle/jobs/driver.py)."""

from __future__ import annotations

from pyiceberg.table import Table

from lifecycle import log, metrics
from lifecycle.jobs.base import JobContext, JobRequest, JobResult
from lifecycle.jobs.driver import Counts, Finished, Planned, drive
from lifecycle.schema_history.commit import DELETE_KIND, commit_history, delete_dropped, removals_visible
from lifecycle.schema_history.plan import JOB, HistoryPlan, plan_history
from lifecycle.state import models as m
from lifecycle.state.models import NewEntry, Plan, PlanState

_log = log.get("lifecycle.schema_history")


class CompactSchemaHistory:
    """compact-schema-history as an operation of the shared job skeleton (lifecycle/jobs/driver.py). A lost race
    is raised, not re-planned (attempts = 1): the next scheduled run plans on the new metadata."""

    job, attempts, stages = JOB, 1, False

    def recover(self, ctx: JobContext, name: str, table: Table) -> Counts:
        return dict(recover(ctx, name, table))

    def plan(self, ctx: JobContext, req: JobRequest, table: Table) -> Planned[HistoryPlan]:
        plan = plan_history(req.table, table.metadata, table.metadata_location, table.io,
                            ctx.table_settings(req.table).metadata_log_max)
        summary: Counts = {"schemas_removed": len(plan.schemas_removed), "specs_removed": len(plan.specs_removed),
                           "metadata_files_dropped": len(plan.metadata_files_dropped)}
        return Planned(None if plan.empty else plan, {} if plan.empty else summary, plan.to_dict())

    def journal(self, ctx: JobContext, req: JobRequest, table: Table, plan: HistoryPlan) -> Plan:
        entries = [NewEntry(p) for p in plan.metadata_files_dropped]
        return ctx.store.create_plan(JOB, req.table, "", plan.to_dict(), table.metadata.current_snapshot_id,
                                     run_id=req.run_id, entries={DELETE_KIND: entries})

    def execute(self, ctx: JobContext, table: Table, plan: HistoryPlan, row: Plan) -> Counts:
        return {}

    def commit(self, ctx: JobContext, table: Table, plan: HistoryPlan, row: Plan) -> None:
        commit_history(ctx.catalog, table, plan)

    def abandon(self, ctx: JobContext, table: Table, row: Plan, state: PlanState, reason: str) -> None:
        _abandon(ctx, row.plan_id, state)

    def finish(self, ctx: JobContext, table: Table, plan: HistoryPlan, row: Plan) -> Finished:
        ctx.store.transition_plan(row.plan_id, m.COMMITTING, m.COMMITTED)
        deleted, skipped = delete_dropped(ctx, row.table_name, row.plan_id)
        ctx.store.transition_plan(row.plan_id, m.COMMITTED, m.DONE, {"deleted": deleted, "skipped": skipped})
        metrics.METADATA_REMOVED.labels(row.table_name, "schema").inc(len(plan.schemas_removed))
        metrics.METADATA_REMOVED.labels(row.table_name, "partition-spec").inc(len(plan.specs_removed))
        metrics.METADATA_REMOVED.labels(row.table_name, "metadata-file").inc(deleted)
        return Finished({"metadata_files_deleted": deleted}, [f"plan {row.plan_id}"])


def run(ctx: JobContext, req: JobRequest) -> JobResult:
    return drive(CompactSchemaHistory(), ctx, req)


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
