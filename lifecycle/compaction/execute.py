"""Stage one file group durably, and reconcile groups a previous run left open.

The plan row and one `stage` journal row per output are written before any output exists. Journal states:
pending → written → committed | removed. Plan states: planned → executing → ready (outputs staged) →
committing → committed → done (lifecycle.compaction.committer commits ready groups in batches), or abandoned
(a real conflict, or a run that died before staging: staged files removed), or unknown (commit outcome
unknown: files stay until the table says whether the commit landed).
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field

from pyiceberg.io.pyarrow import schema_to_pyarrow
from pyiceberg.table import Table

from lifecycle import log
from lifecycle.compaction.committer import COMMIT_LOCK_KIND, JOB, abandon, finish
from lifecycle.compaction.mor_read import LiveGroup
from lifecycle.compaction.planner import SORT, ZORDER, FileGroup, Strategy
from lifecycle.compaction.rewrite import Memory, OutputOptions, compaction_threads, rewrite_group, row_group_rows
from lifecycle.compaction.scratch import SCRATCH, recover_scratch, scratch_entry, scratch_root, use_scratch
from lifecycle.faults import crash_point
from lifecycle.iceberg.partitions import parse_partition
from lifecycle.jobs.base import JobContext
from lifecycle.safety.landed import LiveSets, landed, settled
from lifecycle.safety.staged import remove_staged
from lifecycle.state.locks import AdvisoryLock
from lifecycle.state.models import (
    ABANDONED,
    COMMITTED,
    COMMITTING,
    DONE,
    EXECUTING,
    PENDING,
    PLANNED,
    READY,
    STAGE,
    STAGED_KINDS,
    STAGED_OPEN_STATES,
    UNKNOWN,
    WRITTEN,
    NewEntry,
    Plan,
)

RESUME = "resume"
_log = log.get("lifecycle.compaction")
_log = log.get("lifecycle.compaction")


@dataclass
class Tally:
    counts: dict[str, int] = field(default_factory=dict)
    refused: dict[str, str] = field(default_factory=dict)   # partition -> why it was not compacted

    def add(self, key: str, n: int = 1) -> None:
        self.counts[key] = self.counts.get(key, 0) + n


def output_paths(table: Table, partition: str, plan_id: str, n: int) -> list[str]:
    key = parse_partition(partition, table.spec(), table.schema())
    part_path = table.spec().partition_to_path(key.record(), table.schema())
    base = f"{table.location().rstrip('/')}/data/{part_path}"
    return [f"{base}/compact-{plan_id[:13]}-{i:05d}.parquet" for i in range(n)]


def _reconcile_committing(ctx: JobContext, table: Table, plan: Plan, live: LiveSets, tally: Tally) -> None:
    """A plan whose commit may have landed: decided from the table, under the table's commit lock."""
    with AdvisoryLock(ctx.db_url, COMMIT_LOCK_KIND, plan.table_name) as lock:
        if not lock.acquired:
            tally.add("recovery_deferred")   # a committer is at work on this table: it owns the plan now
            return
        current = ctx.store.plan(plan.plan_id)
        if current is None or current.state not in (COMMITTING, UNKNOWN, COMMITTED):
            return
        if current.state != COMMITTED and not settled(ctx.catalog, current.updated_at, ctx.clock.now()):
            tally.add("recovery_unsettled")
            return
        staged = [e.path for e in ctx.store.entries(plan_id=plan.plan_id, kind=STAGE)]
        if current.state == COMMITTED or landed(table.refresh(), staged, live, ctx.schemes()):
            finish(ctx, current, plan.table_name)
            tally.add("recovered_committed")
        else:
            abandon(ctx, table, current, current.state, "recovery: the commit did not land")
            tally.add("recovered_removed")


def recover(ctx: JobContext, table: Table, table_name: str, partition: str, tally: Tally,
            live: LiveSets | None = None) -> set[str]:
    """Reconcile this partition's open plans with the table (the caller holds the partition lock).

    planned/executing: the run died before staging was complete, nothing can have landed → abandoned and
    its staged files removed. ready: left to the table's batched commit. committing/unknown/committed:
    reconciled from the table itself under the commit lock. Plans abandoned earlier whose staged files a
    crash left behind are cleaned too. Returns the input paths a stopped run recorded as still to do."""
    live = live or LiveSets()
    resume: set[str] = set()
    for plan in ctx.store.open_plans(JOB, table_name, partition):
        if RESUME in plan.payload:
            resume |= {path for g in plan.payload[RESUME] for path in FileGroup.from_dict(g).paths()}
            ctx.store.transition_plan(plan.plan_id, PLANNED, DONE, {"resumed_at": ctx.clock.now().isoformat()})
        elif plan.state in (PLANNED, EXECUTING):
            abandon(ctx, table, plan, plan.state, "recovery: the run died before its outputs were staged")
            tally.add("recovered_removed")
        elif plan.state in (COMMITTING, UNKNOWN, COMMITTED):
            _reconcile_committing(ctx, table, plan, live, tally)
        elif plan.state == READY:
            tally.add("recovered_ready")
    for plan_id in ctx.store.closed_plans_with_open_entries(JOB, table_name, [ABANDONED], STAGED_KINDS,
                                                           STAGED_OPEN_STATES):
        remove_staged(ctx.store, table, table_name, plan_id, ctx.schemes(), JOB)
    scratch = recover_scratch(ctx.store, table_name)   # spill folders of runs that died (lifecycle.compaction.scratch)
    if scratch:
        tally.add("recovered_scratch", scratch)
    return resume


def record_resume(ctx: JobContext, table_name: str, partition: str, groups: Sequence[FileGroup],
                  base_snapshot_id: int | None, run_id: str | None) -> None:
    """A stopped run records the groups it did not reach; the next run continues with exactly those."""
    if groups:
        ctx.store.create_plan(JOB, table_name, partition, {RESUME: [g.to_dict() for g in groups]},
                              base_snapshot_id, run_id=run_id)


def stage_group(ctx: JobContext, table: Table, table_name: str, partition: str, strategy: Strategy,
                group: FileGroup, base_snapshot_id: int | None, run_id: str | None,
                locks: Sequence[AdvisoryLock] = ()) -> str:
    """Rewrite one group into staged outputs and mark its plan ready for the table's commit; returns the plan id.

    The locks this run holds are checked right before the plan becomes ready: a run that lost its lock stops
    without handing anything to the committer (whoever took the lock over reconciles the plan)."""
    plan_id = str(uuid.uuid4())
    # merge-on-read: inputs with deletes are read with them applied; the group then counts live rows
    live = LiveGroup.open(table, partition, group, base_snapshot_id, ctx.limiter) if group.deletes else None
    group = live.group if live is not None else group
    paths = output_paths(table, partition, plan_id, group.output_count)
    sort_order_id = strategy.sort_order_id if strategy.name == SORT else None
    payload = {"strategy": strategy.to_dict(), "group": group.to_dict(), "outputs": paths,
               "spec_id": table.spec().spec_id, "sort_order_id": sort_order_id}
    entries: dict[str, Sequence[NewEntry]] = {
        STAGE: [NewEntry(p, None, None, {"index": i}) for i, p in enumerate(paths)]}
    ordered = strategy.name in (SORT, ZORDER) and bool(paths)
    if ordered:   # sort/Z-order may spill: the scratch folder is journaled before it exists
        entries[SCRATCH] = [scratch_entry(scratch_root(ctx.settings), plan_id)]
    ctx.store.create_plan(JOB, table_name, partition, payload, base_snapshot_id, run_id=run_id, plan_id=plan_id,
                          entries=entries)
    ctx.store.transition_plan(plan_id, PLANNED, EXECUTING)
    ids = {e.path: e.entry_id for e in ctx.store.entries(plan_id=plan_id, kind=STAGE)}
    done: list[int] = []

    def on_written(index: int, path: str, bytes_so_far: int) -> None:
        ctx.store.transition_entries([ids[path]], PENDING, WRITTEN)
        done.append(index)
        ctx.progress(f"compact {table_name} [{partition}]: wrote {len(done)}/{len(paths)} files")
        crash_point("compact.after-stage")

    props = table.properties
    budget = ctx.settings.compaction.memory_budget_bytes   # bounds every strategy's buffered row groups too
    level = props.get("write.parquet.compression-level")
    options = OutputOptions(schema_to_pyarrow(table.schema()), row_group_rows(group.input_bytes, group.records),
                            compression=props.get("write.parquet.compression-codec", "zstd"),
                            compression_level=int(level) if level else None,
                            row_group_bytes=budget // (8 * compaction_threads()))
    reader = live.read if live is not None else None
    if ordered:
        with use_scratch(ctx.store, plan_id) as folder:
            bytes_out = rewrite_group(table.io, group.inputs, paths, strategy, options, ctx.limiter,
                                      threads=compaction_threads(), on_written=on_written, reader=reader,
                                      memory=Memory(budget, folder))
    else:
        bytes_out = rewrite_group(table.io, group.inputs, paths, strategy, options, ctx.limiter,
                                  threads=compaction_threads(), on_written=on_written,
                                  reader=reader) if paths else 0
    for lock in (ctx.lock, *locks):
        if lock is not None:
            lock.ensure_alive()
    ctx.store.transition_plan(plan_id, EXECUTING, READY, {"bytes_out": bytes_out})
    _log.event("compact.group", table=table_name, partition=partition, plan_id=plan_id, strategy=strategy.name,
               files_in=len(group.inputs), files_out=len(paths), bytes_in=group.input_bytes, bytes_out=bytes_out,
               state="staged")
    crash_point("compact.after-ready")
    return plan_id
