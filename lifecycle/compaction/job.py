"""`compact`: rewrite the small files of a table's partitions (bin-pack, sort or Z-order).

With --partition the runtime already holds that partition's lock. Without it every candidate partition
(and every partition with an open plan) is processed under its own lock; a held one is skipped. Each
partition's groups are staged, then committed through the table's batched committer; a group abandoned for a
real conflict makes the run's status `abandoned` (never `done`).
"""

from __future__ import annotations

import dataclasses
import time
from contextlib import ExitStack

from pyiceberg.table import Table

from lifecycle import metrics
from lifecycle.compaction.committer import await_outcome, batch_settings
from lifecycle.compaction.execute import RESUME, Tally, record_resume, recover, stage_group
from lifecycle.compaction.planner import PartitionPlan, TablePlan, Thresholds, plan_partition, plan_table
from lifecycle.compaction.rewrite import compaction_threads
from lifecycle.compaction.scan import live_files, refused, screen
from lifecycle.compaction.strategy import select_strategy, thresholds_for
from lifecycle.errors import BadInputError, CommitOutcomeUnknownError, StopRequested
from lifecycle.iceberg.partitions import PartitionKey, parse_partition
from lifecycle.jobs.base import ABANDONED, DONE, DRY_RUN, NOTHING_TO_DO, JobContext, JobRequest, JobResult
from lifecycle.safety.landed import LiveSets
from lifecycle.state.locks import AdvisoryLock
from lifecycle.state.models import ABANDONED as PLAN_ABANDONED
from lifecycle.state.models import DONE as PLAN_DONE
from lifecycle.state.models import READY, UNKNOWN

JOB = "compact"


def _plan(table: Table, name: str, key: PartitionKey | None, thresholds: Thresholds) -> TablePlan:
    started = time.monotonic()
    strategy = select_strategy(table.properties, table.sort_order(), table.schema())
    snapshot_id, parts = live_files(table, key)
    plan = plan_table(name, snapshot_id, {p: f.infos() for p, f in parts.items()}, strategy, thresholds)
    plan = screen(table, plan, parts)   # merge-on-read: partitions whose equality deletes cannot be applied
    metrics.PLAN_DURATION.labels(JOB).observe(time.monotonic() - started)
    return plan


def check_partition_exists(table: Table, name: str, key: PartitionKey) -> None:
    """A partition named on the command line must hold live data files: a typo is bad input (exit 2),
    not "nothing to compact"."""
    if key.text not in live_files(table, key)[1]:
        raise BadInputError(f"--partition: table {name} has no partition {key.text} (no live data files in it)")


def describe(plan: TablePlan) -> list[str]:
    lines = []
    for p in plan.partitions:
        d = p.to_dict()
        lines.append(f"{p.partition}: {p.strategy.name}, {d['input_files']} input files ({d['input_bytes']} bytes)"
                     f" -> {d['planned_outputs']} planned output files in {len(p.groups)} group(s)"
                     + (f", {d['delete_files']} delete file(s) applied" if d["delete_files"] else ""))
    lines += refusals(dict(plan.refused))
    return lines or ["no partition needs compaction"]


def refusals(refused: dict[str, str]) -> list[str]:
    return [f"{p}: refused, not compacted: {why}" for p, why in sorted(refused.items())]


def _settle(ctx: JobContext, req: JobRequest, plan_ids: list[str], tally: Tally) -> None:
    """Wait for the batched commit of these groups and count what became of them."""
    if not plan_ids:
        return
    states = await_outcome(ctx, req.table, plan_ids, batch_settings(ctx))
    for plan_id, state in states.items():
        plan = ctx.store.plan(plan_id)
        group = plan.payload.get("group", {}) if plan is not None else {}
        if state == PLAN_DONE:
            tally.add("groups_committed")
            tally.add("files_in", int(group.get("input_files", 0)))
            tally.add("files_out", len(plan.payload.get("outputs", ())) if plan is not None else 0)
            tally.add("bytes_in", int(group.get("input_bytes", 0)))
            tally.add("bytes_out", int(plan.progress.get("bytes_out", 0)) if plan is not None else 0)
            tally.add("delete_files_removed", int(plan.progress.get("delete_files_removed", 0)) if plan else 0)
        elif state == PLAN_ABANDONED:
            tally.add("groups_abandoned")
    unknown = [p for p, s in states.items() if s == UNKNOWN]
    if unknown:
        raise CommitOutcomeUnknownError(f"compact {req.table}: the outcome of {len(unknown)} group commit(s) is"
                                        " unknown; their files stay and the next run reconciles them")


def _partition(ctx: JobContext, req: JobRequest, table: Table, partition: str, thresholds: Thresholds,
               tally: Tally, lock: AdvisoryLock | None, live: LiveSets) -> None:
    resume = recover(ctx, table, req.table, partition, tally, live)
    waiting = [p.plan_id for p in ctx.store.open_plans(JOB, req.table, partition)
               if p.state == READY and RESUME not in p.payload]
    table.refresh()
    started = time.monotonic()
    strategy = select_strategy(table.properties, table.sort_order(), table.schema())
    key = parse_partition(partition, table.spec(), table.schema())
    snapshot_id, parts = live_files(table, key)
    found = parts.get(partition)
    plan: PartitionPlan | None = None
    if found is not None and resume:  # continue exactly where a stopped run left off
        infos = [f for f in found.infos() if f.path in resume]
        plan = plan_partition(partition, infos, strategy, dataclasses.replace(thresholds, min_small_files=2))
    elif found is not None and not waiting:
        plan = plan_partition(partition, found.infos(), strategy, thresholds)
    why = refused(table, plan, found) if plan is not None and found is not None else None
    if why is not None:   # merge-on-read: equality deletes that cannot be applied exactly
        tally.refused[partition] = why
        plan = None
    metrics.PLAN_DURATION.labels(JOB).observe(time.monotonic() - started)
    if found is None:
        tally.add("partitions_without_files")  # e.g. a partition dropped since the fan-out
    staged: list[str] = list(waiting)
    if plan is not None:
        tally.add("partitions")
        total, done = sum(g.input_bytes for g in plan.groups), 0
        try:
            for i, group in enumerate(plan.groups):
                try:
                    ctx.checkpoint(JOB)
                except StopRequested:
                    record_resume(ctx, req.table, partition, list(plan.groups[i:]), snapshot_id, req.run_id)
                    raise
                ctx.progress(f"compact {req.table} [{partition}]: group {i + 1}/{len(plan.groups)}:"
                             f" {len(group.inputs)} files -> {group.output_count}", done, total, "bytes")
                staged.append(stage_group(ctx, table, req.table, partition, strategy, group, snapshot_id,
                                          req.run_id, [lock] if lock is not None else []))
                done += group.input_bytes
            ctx.progress(f"compact {req.table} [{partition}]: {len(plan.groups)} group(s) staged", done, total,
                         "bytes")
        except StopRequested:
            _settle(ctx, req, staged, tally)    # what is staged still commits; the rest resumes next run
            raise
    _settle(ctx, req, staged, tally)


def run(ctx: JobContext, req: JobRequest) -> JobResult:
    compaction_threads()  # a bad $LIFECYCLE_COMPACTION_THREADS fails here, before anything is planned
    table = ctx.catalog.load_table(req.table)
    strategy = select_strategy(table.properties, table.sort_order(), table.schema())
    thresholds = thresholds_for(ctx.table_settings(req.table), table.properties, strategy)
    key = parse_partition(req.partition, table.spec(), table.schema()) if req.partition else None
    if req.dry_run:
        plan = _plan(table, req.table, key, thresholds)
        counts: dict[str, int | float] = {"partitions": len(plan.partitions),
                  "input_files": sum(len(g.inputs) for p in plan.partitions for g in p.groups),
                  "planned_outputs": sum(g.output_count for p in plan.partitions for g in p.groups)}
        if plan.refused:
            counts["partitions_refused"] = len(plan.refused)
        return JobResult(JOB, req.table, req.partition, DRY_RUN, counts, plan=plan.to_dict(), detail=describe(plan))
    tally = Tally()
    live = LiveSets()
    try:
        if key is not None:
            _partition(ctx, req, table, key.text, thresholds, tally, None, live)
        else:
            whole = _plan(table, req.table, None, thresholds)
            tally.refused.update(whole.refused)
            candidates = {p.partition for p in whole.partitions}
            candidates |= {p.partition for p in ctx.store.open_plans(JOB, req.table)}
            for partition in sorted(candidates):
                ctx.checkpoint(JOB)
                with ExitStack() as stack:
                    lock = stack.enter_context(AdvisoryLock(ctx.db_url, JOB, req.table, partition))
                    if not lock.acquired:
                        tally.add("partitions_locked")
                        continue
                    _partition(ctx, req, table, partition, thresholds, tally, lock, live)
    except StopRequested as stop:
        done = tally.counts.get("groups_committed", 0)
        raise StopRequested(f"{stop}; {done} group(s) committed, the next run continues") from stop
    counts = dict(tally.counts)
    notes = refusals(tally.refused)
    if notes:
        counts["partitions_refused"] = len(tally.refused)
    if counts.get("groups_abandoned"):
        return JobResult(JOB, req.table, req.partition, ABANDONED, dict(counts),
                         detail=[f"{counts['groups_abandoned']} group(s) abandoned after a real conflict (inputs"
                                 " removed or given deletes since the plan); their staged files were removed", *notes])
    worked = any(counts.get(k) for k in ("groups_committed", "recovered_committed", "recovered_removed"))
    return JobResult(JOB, req.table, req.partition, DONE if worked else NOTHING_TO_DO, dict(counts), detail=notes)
