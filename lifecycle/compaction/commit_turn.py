"""The table's commit turn: who commits a table's ready groups, and when.

A run that staged its groups waits for their outcome (`await_outcome`). Whenever the table's commit lock
(advisory lock kind `compact-commit`) is free it takes it and becomes the holder: it first reclaims what a
holder that died left `committing` (decided from the table: landed -> done, not landed -> ready again), then
lingers while more groups of the table are on their way, then commits every ready group (up to `max_groups`
per snapshot, lifecycle.compaction.committer) and hands the lock on once its own groups are decided. A holder
that dies frees the lock with its database session; a waiter takes it over at its next poll.

Lingering: the holder commits when the batch is full, or when no new group became ready for
`linger_seconds` while siblings are still rewriting (a plan `executing`, or a partition run of the table that
started and staged nothing yet), or for `idle_seconds` while none is; never longer than `linger_max_seconds`.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta

from lifecycle import log
from lifecycle.compaction.committer import COMMIT_LOCK_KIND, JOB, TERMINAL, commit_batch, finish
from lifecycle.errors import LifecycleError
from lifecycle.jobs.base import JobContext
from lifecycle.safety.landed import LiveSets, landed, settled
from lifecycle.state.locks import AdvisoryLock
from lifecycle.state.models import ABANDONED, COMMITTED, COMMITTING, EXECUTING, READY, STAGE, PlanState
from lifecycle.state.runs import RunStore

_log = log.get("lifecycle.compaction")


@dataclass(frozen=True)
class BatchSettings:
    max_groups: int = 50          # groups in one replace snapshot at most
    linger_seconds: float = 5.0   # how long a holder waits for sibling groups still being rewritten
    linger_max_seconds: float = 30.0   # the linger never lasts longer in all
    idle_seconds: float = 2.0     # linger with no sibling rewriting: a grace for runs about to start
    poll_seconds: float = 0.2
    wait_seconds: float = 900.0   # how long a run waits for its groups' outcome before it gives up waiting
    sibling_fresh_seconds: float = 45.0   # a running sibling whose heartbeat is older counts as dead


def batch_settings(ctx: JobContext) -> BatchSettings:
    c = ctx.settings.compaction
    return BatchSettings(max_groups=c.commit_batch_max_groups, linger_seconds=c.commit_linger_seconds,
                         linger_max_seconds=6 * c.commit_linger_seconds,
                         sibling_fresh_seconds=3 * ctx.settings.fleet.run_heartbeat_seconds)


def _siblings_busy(ctx: JobContext, identifier: str, batch: BatchSettings, run_id: str | None) -> bool:
    """Are other groups of the table still on their way: rewriting (executing), or in a partition run that
    has started but staged nothing yet (still planning or rewriting its first group)?"""
    if ctx.store.plans_in_states(JOB, identifier, [EXECUTING], limit=1):
        return True
    fresh_since = ctx.clock.now() - timedelta(seconds=batch.sibling_fresh_seconds)
    return RunStore(ctx.store).starting(JOB, identifier, fresh_since, exclude=run_id) > 0


def _linger(ctx: JobContext, identifier: str, batch: BatchSettings, lock: AdvisoryLock, run_id: str | None) -> None:
    """Wait for more groups of the table before committing, until the batch is full or the table is quiet:
    no new ready group for `linger_seconds` while siblings are still rewriting, or for `idle_seconds` while
    none is (a grace for partition tasks already delivered whose runs have not started yet). Never longer
    than `linger_max_seconds` in all."""
    started = time.monotonic()
    last_growth, seen = started, -1
    while True:
        ready = len(ctx.store.plans_in_states(JOB, identifier, [READY], limit=batch.max_groups))
        now = time.monotonic()
        if ready >= batch.max_groups or now - started >= batch.linger_max_seconds:
            return
        if ready > seen:
            seen, last_growth = ready, now
        quiet = batch.linger_seconds if _siblings_busy(ctx, identifier, batch, run_id) else batch.idle_seconds
        if now - last_growth >= min(quiet, batch.linger_seconds):
            return
        lock.ensure_alive()
        time.sleep(batch.poll_seconds)


def reclaim(ctx: JobContext, identifier: str) -> dict[str, int]:
    """Holder of the commit lock: plans a dead holder left `committing`/`committed` (nobody else can be
    committing them now) are decided from the table: landed -> done; did not land -> `ready` again, to be
    committed in the next batch (validated from their base as always). Returns {"recovered_committed": n,
    "recovered_ready": m} (the names recovery's counts use)."""
    orphans = ctx.store.plans_in_states(JOB, identifier, [COMMITTING, COMMITTED])
    counts: dict[str, int] = {}
    if not orphans:
        return counts
    table, live = ctx.catalog.load_table(identifier), LiveSets()
    for plan in orphans:
        if plan.state == COMMITTING and not settled(ctx.catalog, plan.updated_at, ctx.clock.now()):
            continue      # (a catalog whose request may still apply: left to the recovery grace)
        staged = [e.path for e in ctx.store.entries(plan_id=plan.plan_id, kind=STAGE)]
        if plan.state == COMMITTED or landed(table, staged, live, ctx.schemes()):
            finish(ctx, plan, identifier)
            outcome = "recovered_committed"
        else:
            ctx.store.transition_plan(plan.plan_id, COMMITTING, READY)
            outcome = "recovered_ready"
        counts[outcome] = counts.get(outcome, 0) + 1
        _log.event("compact.group_reclaimed", table=identifier, partition=plan.partition, plan_id=plan.plan_id,
                   outcome=outcome)
    return counts


def reclaim_if_free(ctx: JobContext, identifier: str) -> dict[str, int]:
    """Before a run recovers its partition: reclaim a dead holder's groups if nobody holds the commit lock
    (so that recovery finds them ready or done, and never abandons a group that may still commit)."""
    if not ctx.store.plans_in_states(JOB, identifier, [COMMITTING, COMMITTED], limit=1):
        return {}
    with AdvisoryLock(ctx.db_url, COMMIT_LOCK_KIND, identifier) as lock:
        return reclaim(ctx, identifier) if lock.acquired else {}


def commit_ready(ctx: JobContext, identifier: str, lock: AdvisoryLock, batch: BatchSettings,
                 plan_ids: Sequence[str] = (), run_id: str | None = None) -> int:
    """Holder of the commit lock: reclaim what a dead holder left, then commit ready groups batch by batch
    until these plans (the holder's own) are decided; a waiter takes over the rest. Returns snapshots made."""
    reclaim(ctx, identifier)
    snapshots, first = 0, True
    while first or not _decided(ctx, plan_ids):
        first = False
        _linger(ctx, identifier, batch, lock, run_id)
        ready = ctx.store.plans_in_states(JOB, identifier, [READY], limit=batch.max_groups)
        if not ready:
            break
        result = commit_batch(ctx, identifier, ready, lock)
        snapshots += int(result is not None and result.snapshot_id is not None)
    return snapshots


def _states(ctx: JobContext, plan_ids: Sequence[str]) -> dict[str, PlanState]:
    return {pid: (p.state if (p := ctx.store.plan(pid)) else ABANDONED) for pid in plan_ids}


def _decided(ctx: JobContext, plan_ids: Sequence[str]) -> bool:
    return all(s in TERMINAL for s in _states(ctx, plan_ids).values())


def await_outcome(ctx: JobContext, identifier: str, plan_ids: Sequence[str], batch: BatchSettings,
                  run_id: str | None = None) -> dict[str, PlanState]:
    """Wait until these plans are done, abandoned or unknown, taking the table's commit lock whenever it is
    free (a holder that died frees it with its session) and committing ready groups. Returns {plan id: state}."""
    deadline = time.monotonic() + batch.wait_seconds
    lock = AdvisoryLock(ctx.db_url, COMMIT_LOCK_KIND, identifier)
    try:
        while True:
            states = _states(ctx, plan_ids)
            if all(s in TERMINAL for s in states.values()):
                return states
            if lock.try_acquire():
                try:
                    commit_ready(ctx, identifier, lock, batch, plan_ids, run_id)
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
