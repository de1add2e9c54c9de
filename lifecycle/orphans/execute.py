"""Execute an orphan plan from its journal: batch by batch, each re-checked against fresh metadata.

Before every batch: checkpoint (lock, window, shutdown), refresh the table, rebuild the guards (live set,
staged and purge journal, active writers). A file a guard now protects is marked `kept` (with the guard);
the rest are deleted, then marked `deleted` (already-gone files too). A crash between the delete and the
mark only means the next run deletes a missing file, which counts as done.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from pyiceberg.table import Table

from lifecycle import log, metrics
from lifecycle.errors import LifecycleError
from lifecycle.faults import crash_point
from lifecycle.jobs.base import JobContext
from lifecycle.orphans.classify import CANDIDATE, classify_uri
from lifecycle.orphans.plan import JOB, build_guards, check_gc_enabled
from lifecycle.safety.deletes import TableFiles, delete_files
from lifecycle.safety.landed import LiveSets
from lifecycle.safety.paths import parse
from lifecycle.state.models import DELETED, DONE, EXECUTING, KEPT, ORPHAN, PENDING, PLANNED, Plan

_log = log.get("lifecycle.orphans")


def execute_plan(ctx: JobContext, plan: Plan, table: Table, live: LiveSets) -> dict[str, int]:
    ident = plan.table_name
    counts: Counter[str] = Counter()
    if plan.state == PLANNED:
        plan = ctx.store.transition_plan(plan.plan_id, PLANNED, EXECUTING)
    size = ctx.settings.orphans.delete_batch_size
    while True:
        batch = ctx.store.entries(plan_id=plan.plan_id, kind=ORPHAN, states=[PENDING], limit=size)
        if not batch:
            break
        ctx.checkpoint(JOB)
        table = table.refresh()
        check_gc_enabled(table, ident)
        guards = build_guards(ctx, ident, table, live, age_check=False)  # age was checked when planned
        kept: dict[str, list[int]] = {}
        doomed = []
        for e in batch:
            label = classify_uri(parse(e.path), None, guards)
            if label == CANDIDATE:
                doomed.append(e)
            else:
                kept.setdefault(label, []).append(e.entry_id)
        for guard, ids in kept.items():
            ctx.store.transition_entries(ids, PENDING, KEPT, info={"guard": guard, "when": "before-delete"})
            metrics.ORPHANS_KEPT.labels(ident, guard).inc(len(ids))
            counts[f"kept_{guard}"] += len(ids)
        outcome = delete_files([e.path for e in doomed], TableFiles.of(table, ident, guards.schemes), JOB)
        by_path = {e.path: e for e in doomed}
        gone = [by_path[p].entry_id for p in outcome.deleted]
        missing = [by_path[p].entry_id for p in outcome.already_gone]
        ctx.store.transition_entries(gone, PENDING, DELETED)
        ctx.store.transition_entries(missing, PENDING, DELETED, info={"already_gone": True})
        reclaimed = sum(by_path[p].bytes or 0 for p in outcome.deleted)
        metrics.ORPHANS_CLEANED.labels(ident).inc(len(gone) + len(missing))
        metrics.ORPHAN_BYTES.labels(ident).inc(reclaimed)
        counts["deleted"] += len(gone) + len(missing)
        counts["already_gone"] += len(missing)
        counts["bytes_reclaimed"] += reclaimed
        counts["batches"] += 1
        ctx.store.record_progress(plan.plan_id, EXECUTING, {k: int(v) for k, v in counts.items()})
        handled = sum(v for k, v in counts.items() if k == "deleted" or k.startswith("kept_"))
        ctx.progress(f"clean-orphans {ident}: {counts['deleted']} deleted", handled, plan.payload.get("candidates"),
                     "files")
        _log.event("clean-orphans.batch", table=ident, plan_id=plan.plan_id, batch=counts["batches"],
                   deleted=len(gone) + len(missing), already_gone=len(missing), bytes_reclaimed=reclaimed,
                   kept={guard: len(ids) for guard, ids in kept.items()}, failed=len(outcome.failed))
        if outcome.failed:
            path, err = next(iter(outcome.failed.items()))
            raise LifecycleError(f"clean-orphans {ident}: {len(outcome.failed)} deletes failed (first: {path}: {err});"
                                 " they stay journaled for the next run")
        crash_point("orphans.mid-delete")
    ctx.store.transition_plan(plan.plan_id, EXECUTING, DONE, progress=_ints(counts))
    return dict(counts)


def _ints(counts: Counter[str]) -> dict[str, Any]:
    return {k: int(v) for k, v in counts.items()}
