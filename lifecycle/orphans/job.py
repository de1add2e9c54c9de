"""`clean-orphans`: resume unfinished orphan plans, scan, journal the candidates, delete in batches."""

from __future__ import annotations

from collections import Counter
from typing import Any

from lifecycle import metrics
from lifecycle.jobs.base import DONE, DRY_RUN, NOTHING_TO_DO, JobContext, JobRequest, JobResult
from lifecycle.orphans.classify import LIVE
from lifecycle.orphans.execute import execute_plan
from lifecycle.orphans.plan import JOB, check_gc_enabled, scan
from lifecycle.safety.landed import LiveSets
from lifecycle.state.models import ORPHAN, NewEntry


def run(ctx: JobContext, req: JobRequest) -> JobResult:
    ident = req.table
    table = ctx.catalog.load_table(ident)
    check_gc_enabled(table, ident)
    live = LiveSets()
    counts: Counter[str] = Counter()
    detail: list[str] = []
    if not req.dry_run:
        for plan in ctx.store.open_plans(JOB, ident):  # a crashed run's journal: finish it first
            ctx.progress(f"clean-orphans {ident}: resuming plan {plan.plan_id}")
            counts.update(execute_plan(ctx, plan, table, live))
            counts["resumed_plans"] += 1
            detail.append(f"resumed plan {plan.plan_id}")
    ctx.checkpoint(JOB)
    ctx.progress(f"clean-orphans {ident}: listing {table.location()}")
    found = scan(ctx, ident, table, live)
    res = found.result
    counts["listed"] += res.listed
    counts["live"] += res.counts[LIVE]
    counts["candidates"] += len(res.candidates)
    for guard, n in res.kept().items():
        counts[f"kept_{guard}"] += n
    if req.dry_run:
        counts["open_plans"] = len(ctx.store.open_plans(JOB, ident))  # a real run would resume these first
        return JobResult(JOB, ident, None, DRY_RUN, _ints(counts), plan=found.to_plan(),
                         detail=would_delete(res.candidates))
    for guard, n in res.kept().items():
        if n:
            metrics.ORPHANS_KEPT.labels(ident, guard).inc(n)
    if not res.candidates:
        return JobResult(JOB, ident, None, DONE if counts["resumed_plans"] else NOTHING_TO_DO, _ints(counts),
                         detail=detail)
    entries = [NewEntry(f.path, f.size, None, {"mtime": f.mtime}) for f in res.candidates]
    payload = {"location": found.location, "listed": res.listed, "kept": res.kept(),
               "candidates": len(res.candidates), "candidate_bytes": res.candidate_bytes}
    plan = ctx.store.create_plan(JOB, ident, "", payload, found.snapshot_id, run_id=req.run_id,
                                 entries={ORPHAN: entries})
    counts.update(execute_plan(ctx, plan, table, live))
    return JobResult(JOB, ident, None, DONE, _ints(counts), detail=detail)


DRY_RUN_LISTED = 50


def would_delete(candidates: list[Any]) -> list[str]:
    """The dry run's text: the files a real run would delete (the first 50, then how many more)."""
    lines = [f"would delete {f.path} ({f.size} bytes)" for f in candidates[:DRY_RUN_LISTED]]
    if len(candidates) > DRY_RUN_LISTED:
        lines.append(f"... and {len(candidates) - DRY_RUN_LISTED} more (--json lists them all)")
    return lines


def _ints(counts: Counter[str]) -> dict[str, int | float]:
    return {k: int(v) for k, v in counts.items()}
