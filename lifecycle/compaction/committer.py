"""Batched, serialized commits of compaction groups: one table's commits never race each other.

A run rewrites its groups, stages their outputs, marks each plan `ready`, then waits for their outcome
(lifecycle.compaction.commit_turn decides who commits and when). The holder of the table's commit lock commits
ready groups here, many in ONE `replace` snapshot, each validated from its own base snapshot; a group that
really conflicts (its inputs were removed or got deletes) is dropped from the batch, its staged files removed
and its plan `abandoned`, and the others still commit -- unless the table already reads the dropped group's
outputs (an earlier commit of it whose outcome was unknown landed after all): that group is done, its files
stay (lifecycle.safety.landed).
"""

from __future__ import annotations

import time
from collections.abc import Sequence

from pyiceberg.table import Table

from lifecycle import log, metrics
from lifecycle.compaction.commit import CommitResult, GroupCommit, commit_groups
from lifecycle.compaction.mor_commit import removed_per_group
from lifecycle.compaction.planner import FileGroup
from lifecycle.compaction.validate import RewriteCheck
from lifecycle.errors import CommitConflictError, CommitOutcomeUnknownError, StaleStateError
from lifecycle.faults import crash_point
from lifecycle.iceberg.datafiles import data_file_from_parquet
from lifecycle.identity import fleet_properties
from lifecycle.jobs.base import JobContext
from lifecycle.safety.landed import LiveSets, landed
from lifecycle.safety.staged import remove_staged
from lifecycle.state.locks import AdvisoryLock
from lifecycle.state.models import (
    ABANDONED,
    COMMITTED,
    COMMITTING,
    DONE,
    READY,
    STAGE,
    STAGED_OPEN_STATES,
    UNKNOWN,
    Plan,
)

JOB = "compact"
COMMIT_LOCK_KIND = "compact-commit"
TERMINAL = (DONE, ABANDONED, UNKNOWN)
_log = log.get("lifecycle.compaction")


def finish(ctx: JobContext, plan: Plan, identifier: str) -> None:
    """A landed plan: its staged entries committed, the plan done, the compaction counted."""
    entries = ctx.store.entries(plan_id=plan.plan_id, kind=STAGE, states=STAGED_OPEN_STATES)
    ctx.store.transition_entries([e.entry_id for e in entries], STAGED_OPEN_STATES, COMMITTED)
    ctx.store.transition_plan(plan.plan_id, (COMMITTING, COMMITTED, UNKNOWN), DONE)
    metrics.FILES_COMPACTED.labels(identifier).inc(len(plan.payload["group"]["inputs"]))
    metrics.BYTES_REWRITTEN.labels(identifier).inc(int(plan.progress.get("bytes_out", 0)))
    metrics.COMPACTION_GROUPS.labels(identifier, "committed").inc()


def abandon(ctx: JobContext, table: Table, plan: Plan, expected: str | Sequence[str], reason: str) -> None:
    """A plan that surely did not land: closed first (so nobody commits it), then its staged files removed."""
    ctx.store.transition_plan(plan.plan_id, expected, ABANDONED, {"reason": reason[:500]})
    remove_staged(ctx.store, table, plan.table_name, plan.plan_id, ctx.schemes(), JOB)
    metrics.COMPACTION_GROUPS.labels(plan.table_name, "abandoned").inc()
    _log.warning("compact.group_abandoned", table=plan.table_name, partition=plan.partition,
                 plan_id=plan.plan_id, reason=reason[:500])


def _drop(ctx: JobContext, identifier: str, plan: Plan, reason: str, live: LiveSets) -> None:
    """A group dropped from a batch is abandoned -- unless its outputs are what the table reads (an earlier
    commit of it whose outcome was unknown landed after all): then its inputs are gone BECAUSE of it, and
    it is done. Its staged files are never removed while the table can read them."""
    table = ctx.catalog.load_table(identifier)
    staged = [e.path for e in ctx.store.entries(plan_id=plan.plan_id, kind=STAGE)]
    if landed(table, staged, live, ctx.schemes()):
        finish(ctx, plan, identifier)
        _log.event("compact.group_landed_earlier", table=identifier, plan_id=plan.plan_id, reason=reason[:500])
    else:
        abandon(ctx, table, plan, COMMITTING, reason)


def _metadata_size(ctx: JobContext, identifier: str) -> None:
    """The size of the metadata file the commit wrote (each snapshot makes it list one more snapshot)."""
    try:
        table = ctx.catalog.load_table(identifier)
        metrics.TABLE_METADATA_BYTES.labels(identifier).set(len(table.io.new_input(table.metadata_location)))
    except OSError as exc:   # a gauge only: never fails a commit that landed
        _log.warning("compact.metadata_size_unknown", table=identifier, error=str(exc)[:200])


def _group(ctx: JobContext, table: Table, plan: Plan) -> GroupCommit:
    group = FileGroup.from_dict(plan.payload["group"])
    sort_order_id = plan.payload.get("sort_order_id")
    outputs = tuple(data_file_from_parquet(table.io, table.metadata, p, sort_order_id)
                    for p in plan.payload["outputs"])
    check = RewriteCheck(plan.plan_id, plan.base_snapshot_id, frozenset(group.paths()),
                         int(plan.payload.get("spec_id", table.metadata.default_spec_id)))
    return GroupCommit(check, plan.partition, outputs)


def _properties(keys: list[str]) -> dict[str, str]:
    props = fleet_properties(keys[0] if len(keys) == 1 else f"batch-{keys[0]}", JOB)
    props["lifecycle.plan-ids"] = ",".join(keys)
    return props


def commit_batch(ctx: JobContext, identifier: str, plans: Sequence[Plan], lock: AdvisoryLock) -> CommitResult | None:
    """Commit these ready plans in one snapshot (the caller holds the table's commit lock)."""
    mine = []
    for plan in plans:
        try:
            mine.append(ctx.store.transition_plan(plan.plan_id, READY, COMMITTING))
        except StaleStateError:
            continue          # someone else's (a recovery abandoned it meanwhile)
    if not mine:
        return None
    table = ctx.catalog.load_table(identifier)
    groups: list[GroupCommit] = []
    for plan in mine:
        try:
            groups.append(_group(ctx, table, plan))
        except (FileNotFoundError, OSError, ValueError) as exc:   # a staged output is unreadable or gone
            abandon(ctx, table, plan, COMMITTING, f"staged output unreadable: {type(exc).__name__}: {exc}")
    by_id, live = {p.plan_id: p for p in mine}, LiveSets()
    lock.ensure_alive()
    ctx.progress(f"compact {identifier}: committing {len(groups)} group(s) in one snapshot")
    crash_point("compact.before-commit")
    started = time.monotonic()
    try:
        result = commit_groups(table, groups, _properties,
                               on_retry=lambda n, exc: metrics.COMMIT_RETRIES.labels(JOB).inc())
    except CommitConflictError as exc:    # the table kept changing: this call landed nothing
        for g in groups:
            _drop(ctx, identifier, by_id[g.check.key], str(exc), live)
        return CommitResult(dropped={g.check.key: str(exc) for g in groups})
    except CommitOutcomeUnknownError as exc:
        for g in groups:
            ctx.store.transition_plan(g.check.key, COMMITTING, UNKNOWN, {"reason": str(exc)[:500]})
        raise
    finally:
        metrics.COMMIT_DURATION.labels(JOB).observe(time.monotonic() - started)
    crash_point("compact.after-commit")
    removed = removed_per_group(result.removed_deletes, {k: FileGroup.from_dict(by_id[k].payload["group"]).deletes
                                                         for k in result.committed})
    for key in result.committed:
        plan = ctx.store.transition_plan(key, COMMITTING, COMMITTED, {"snapshot_id": result.snapshot_id,
                                                                      "delete_files_removed": removed[key]})
        finish(ctx, plan, identifier)
        crash_point("compact.batch-finishing")   # some groups of the landed batch done, others not yet
    for key, reason in result.dropped.items():
        _drop(ctx, identifier, by_id[key], reason, live)
    if result.snapshot_id is not None:
        metrics.COMPACTION_COMMITS.labels(identifier).inc()
        _metadata_size(ctx, identifier)
    _log.event("compact.batch_committed", table=identifier, snapshot_id=result.snapshot_id,
               committed=len(result.committed), dropped=len(result.dropped), attempts=result.attempts,
               delete_files_removed=len(result.removed_deletes))
    return result
