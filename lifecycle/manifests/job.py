"""`rewrite-manifests` for one table: recover → plan → journal → write manifests → one `replace` commit, on the
shared job skeleton (lifecycle/jobs/driver.py)."""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Any

from pyiceberg.table import Table

from lifecycle import log, metrics
from lifecycle.jobs.base import JobContext, JobRequest, JobResult
from lifecycle.jobs.driver import Counts, Finished, Planned, drive
from lifecycle.manifests.commit import commit_rewrite, committed_snapshot, manifest_list_path
from lifecycle.manifests.execute import STAGE_KIND, read_entries, write_manifests
from lifecycle.manifests.plan import JOB, ManifestPlan, current_manifests, plan_rewrite
from lifecycle.safety.landed import LiveSets, landed, settled
from lifecycle.safety.staged import remove_staged
from lifecycle.state import models as m
from lifecycle.state.models import NewEntry, Plan, PlanState

_log = log.get("lifecycle.manifests")
MAX_ATTEMPTS = 3


@dataclass
class _Work:
    plan: ManifestPlan
    manifests: list[Any]                      # the data manifests the plan replaces
    snapshot_id: int = field(default_factory=lambda: random.SystemRandom().randrange(1, 2**63 - 1))
    entries: dict[Any, Any] = field(default_factory=dict)
    new: list[Any] = field(default_factory=list)


class RewriteManifests:
    """rewrite-manifests as an operation of the shared job skeleton (lifecycle/jobs/driver.py)."""

    job, attempts, stages = JOB, MAX_ATTEMPTS, True

    def recover(self, ctx: JobContext, name: str, table: Table) -> Counts:
        return dict(recover(ctx, name, table))

    def plan(self, ctx: JobContext, req: JobRequest, table: Table) -> Planned[_Work]:
        manifests = current_manifests(table.io, table.metadata)
        plan = plan_rewrite(req.table, table.metadata, manifests, ctx.table_settings(req.table).manifest_target_bytes)
        if plan is None or plan.compact:
            return Planned(None, {"data_manifests": plan.data_manifests if plan else 0},
                           plan.to_dict() if plan else None)
        return Planned(_Work(plan, manifests),
                       {"data_manifests": plan.data_manifests, "max_manifests_after": plan.bound}, plan.to_dict())

    def journal(self, ctx: JobContext, req: JobRequest, table: Table, work: _Work) -> Plan:
        return ctx.store.create_plan(JOB, req.table, "", {**work.plan.to_dict(), "snapshot_id": work.snapshot_id},
                                     work.plan.base_snapshot_id, run_id=req.run_id)

    def execute(self, ctx: JobContext, table: Table, work: _Work, row: Plan) -> Counts:
        work.entries = read_entries(ctx, table, work.manifests)
        work.new = write_manifests(ctx, table, work.plan, row.plan_id, work.snapshot_id, work.entries)
        ctx.store.add_entries(row.plan_id, row.table_name, STAGE_KIND,
                              [NewEntry(manifest_list_path(table, row.plan_id, work.snapshot_id),
                                        info={"manifest_list": True})])
        return {"manifests_written": len(work.new)}

    def commit(self, ctx: JobContext, table: Table, work: _Work, row: Plan) -> None:
        commit_rewrite(ctx.catalog, table, ctx.clock, row.plan_id, work.snapshot_id, work.manifests, work.new)

    def abandon(self, ctx: JobContext, table: Table, row: Plan, state: PlanState, reason: str) -> None:
        _abandon(ctx, table, row, state, reason)

    def finish(self, ctx: JobContext, table: Table, work: _Work, row: Plan) -> Finished:
        _finish(ctx, row, work.snapshot_id)
        metrics.MANIFESTS_REWRITTEN.labels(row.table_name).inc(work.plan.data_manifests)
        return Finished({"manifests_replaced": work.plan.data_manifests, "manifests_written": len(work.new),
                         "entries": sum(len(v) for v in work.entries.values()), "snapshots_committed": 1},
                        [f"snapshot {work.snapshot_id}, plan {row.plan_id}"])


def run(ctx: JobContext, req: JobRequest) -> JobResult:
    return drive(RewriteManifests(), ctx, req)


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
