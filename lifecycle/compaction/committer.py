"""Batched, serialized commits of compaction groups: one table's commits never race each other.

A run rewrites its groups, stages their outputs, marks each plan `ready`, then waits for their outcome.
Whoever holds the table's commit lock (an advisory lock of its own, beside the partition locks) commits every
ready group of the table in ONE `replace` snapshot, each group validated from its own base snapshot; a group
that really conflicts (its inputs were removed or got deletes) is dropped from the batch, its staged files
removed and its plan `abandoned`, and the others still commit. A run that finds the lock held waits: the
holder commits its group too (batch-on-acquire); if the holder dies, the lock frees and a waiter takes it.

The holder lingers (at most `linger_seconds`) while other groups of the table are still being rewritten and
fewer than `max_groups` are ready, so that parallel partition tasks share one snapshot instead of making one
each. Ready groups are durable rows: a group whose run died after staging is committed by the next holder.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass

from pyiceberg.table import Table

from lifecycle import log, metrics
from lifecycle.compaction.commit import CommitResult, GroupCommit, commit_groups
from lifecycle.compaction.mor_commit import removed_per_group
from lifecycle.compaction.planner import FileGroup
from lifecycle.compaction.validate import RewriteCheck
from lifecycle.errors import CommitConflictError, CommitOutcomeUnknownError, LifecycleError, StaleStateError
from lifecycle.faults import crash_point
from lifecycle.iceberg.datafiles import data_file_from_parquet
from lifecycle.identity import fleet_properties
from lifecycle.jobs.base import JobContext
from lifecycle.safety.staged import remove_staged
from lifecycle.state.locks import AdvisoryLock
from lifecycle.state.models import (
    ABANDONED,
    COMMITTED,
    COMMITTING,
    DONE,
    EXECUTING,
    READY,
    STAGE,
    STAGED_OPEN_STATES,
    UNKNOWN,
    Plan,
    PlanState,
)

JOB = "compact"
COMMIT_LOCK_KIND = "compact-commit"
TERMINAL = (DONE, ABANDONED, UNKNOWN)
_log = log.get("lifecycle.compaction")


@dataclass(frozen=True)
class BatchSettings:
    max_groups: int = 50          # groups in one replace snapshot at most
    linger_seconds: float = 5.0   # how long a holder waits for sibling groups still being rewritten
    poll_seconds: float = 0.2
    wait_seconds: float = 900.0   # how long a run waits for its groups' outcome before it gives up waiting


def batch_settings(ctx: JobContext) -> BatchSettings:
    c = ctx.settings.compaction
    return BatchSettings(max_groups=c.commit_batch_max_groups, linger_seconds=c.commit_linger_seconds)


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
    by_id = {p.plan_id: p for p in mine}
    lock.ensure_alive()
    ctx.progress(f"compact {identifier}: committing {len(groups)} group(s) in one snapshot")
    crash_point("compact.before-commit")
    started = time.monotonic()
    try:
        result = commit_groups(table, groups, _properties,
                               on_retry=lambda n, exc: metrics.COMMIT_RETRIES.labels(JOB).inc())
    except CommitConflictError as exc:    # the table kept changing: nothing landed
        for g in groups:
            abandon(ctx, table, by_id[g.check.key], COMMITTING, str(exc))
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
    for key, reason in result.dropped.items():
        abandon(ctx, table, by_id[key], COMMITTING, reason)
    if result.snapshot_id is not None:
        metrics.COMPACTION_COMMITS.labels(identifier).inc()
    _log.event("compact.batch_committed", table=identifier, snapshot_id=result.snapshot_id,
               committed=len(result.committed), dropped=len(result.dropped), attempts=result.attempts,
               delete_files_removed=len(result.removed_deletes))
    return result


def _linger(ctx: JobContext, identifier: str, batch: BatchSettings, lock: AdvisoryLock) -> None:
    """Wait (bounded) while siblings are still rewriting and the batch is not full."""
    deadline = time.monotonic() + batch.linger_seconds
    while time.monotonic() < deadline:
        ready = ctx.store.plans_in_states(JOB, identifier, [READY], limit=batch.max_groups)
        if len(ready) >= batch.max_groups or not ctx.store.plans_in_states(JOB, identifier, [EXECUTING], limit=1):
            return
        lock.ensure_alive()
        time.sleep(batch.poll_seconds)


def commit_ready(ctx: JobContext, identifier: str, lock: AdvisoryLock, batch: BatchSettings) -> int:
    """Holder of the commit lock: commit every ready group of the table, batch by batch. Returns snapshots made."""
    snapshots = 0
    while True:
        _linger(ctx, identifier, batch, lock)
        ready = ctx.store.plans_in_states(JOB, identifier, [READY], limit=batch.max_groups)
        if not ready:
            return snapshots
        result = commit_batch(ctx, identifier, ready, lock)
        snapshots += int(result is not None and result.snapshot_id is not None)


def await_outcome(ctx: JobContext, identifier: str, plan_ids: Sequence[str],
                  batch: BatchSettings) -> dict[str, PlanState]:
    """Wait until these plans are done, abandoned or unknown, committing ready groups whenever the table's
    commit lock is free. Returns {plan id: final state}."""
    deadline = time.monotonic() + batch.wait_seconds
    lock = AdvisoryLock(ctx.db_url, COMMIT_LOCK_KIND, identifier)
    try:
        while True:
            states = {pid: (p.state if (p := ctx.store.plan(pid)) else ABANDONED) for pid in plan_ids}
            if all(s in TERMINAL for s in states.values()):
                return states
            if lock.try_acquire():
                try:
                    commit_ready(ctx, identifier, lock, batch)
                finally:
                    lock.release()
                continue
            if time.monotonic() > deadline:
                raise LifecycleError(f"compact {identifier}: {sum(s not in TERMINAL for s in states.values())}"
                                     " staged group(s) still wait for the table's commit; they stay ready for the"
                                     " next commit")
            time.sleep(batch.poll_seconds)
    finally:
        lock.release()
