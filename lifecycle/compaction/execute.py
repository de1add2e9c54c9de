"""Execute one file group durably, and reconcile groups a previous run left open.

Plan row and one `stage` journal row per output are written before any output exists. Journal states:
pending → written → committed | removed. Plan states: planned → executing → committing → committed → done,
or abandoned (commit conflict; staged files removed) or unknown (commit outcome unknown; files stay).
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass, field

from pyiceberg.io.pyarrow import schema_to_pyarrow
from pyiceberg.manifest import DataFile
from pyiceberg.table import Table

from lifecycle import log, metrics
from lifecycle.compaction.commit import commit_replace
from lifecycle.compaction.planner import SORT, FileGroup, Strategy
from lifecycle.compaction.rewrite import OutputOptions, compaction_threads, rewrite_group, row_group_rows
from lifecycle.compaction.scan import live_files
from lifecycle.datafiles import data_file_from_parquet
from lifecycle.errors import CommitConflictError, CommitOutcomeUnknownError, UnsafeDeleteError
from lifecycle.faults import crash_point
from lifecycle.identity import fleet_properties
from lifecycle.jobs.base import JobContext
from lifecycle.partitions import PartitionKey, parse_partition
from lifecycle.state.models import (
    ABANDONED,
    COMMITTED,
    COMMITTING,
    DONE,
    EXECUTING,
    OPEN_PLAN_STATES,
    PENDING,
    PLANNED,
    REMOVED,
    UNKNOWN,
    WRITTEN,
    NewEntry,
    Plan,
)

JOB = "compact"
STAGE = "stage"
PLAN_ID_KEY = "lifecycle.plan-id"
RESUME = "resume"
_log = log.get("lifecycle.compaction")


@dataclass
class Tally:
    counts: dict[str, int] = field(default_factory=dict)

    def add(self, key: str, n: int = 1) -> None:
        self.counts[key] = self.counts.get(key, 0) + n


def _key(table: Table, partition: str) -> PartitionKey:
    return parse_partition(partition, table.spec(), table.schema())


def partition_files(table: Table, partition: str) -> dict[str, DataFile]:
    found = live_files(table, _key(table, partition))[1].get(partition)
    return found.files if found is not None else {}


def output_paths(table: Table, partition: str, plan_id: str, n: int) -> list[str]:
    part_path = table.spec().partition_to_path(_key(table, partition).record(), table.schema())
    base = f"{table.location().rstrip('/')}/data/{part_path}"
    return [f"{base}/compact-{plan_id[:13]}-{i:05d}.parquet" for i in range(n)]


def remove_staged(ctx: JobContext, table: Table, plan_id: str) -> int:
    """Delete a plan's staged files (missing counts as done) and mark their entries removed."""
    location = table.location().rstrip("/") + "/"
    removed = 0
    for entry in ctx.store.entries(plan_id=plan_id, kind=STAGE, states=(PENDING, WRITTEN)):
        if not entry.path.startswith(location):
            raise UnsafeDeleteError(f"staged file {entry.path} is outside the table location {location}")
        try:
            table.io.delete(entry.path)
        except FileNotFoundError:
            pass
        ctx.store.transition_entries([entry.entry_id], (PENDING, WRITTEN), REMOVED)
        removed += 1
    return removed


def _finish(ctx: JobContext, plan: Plan, table_name: str, n_inputs: int, bytes_out: int) -> None:
    entries = ctx.store.entries(plan_id=plan.plan_id, kind=STAGE, states=(PENDING, WRITTEN))
    ctx.store.transition_entries([e.entry_id for e in entries], (PENDING, WRITTEN), COMMITTED)
    ctx.store.transition_plan(plan.plan_id, (COMMITTING, COMMITTED, UNKNOWN, EXECUTING, PLANNED), DONE)
    metrics.FILES_COMPACTED.labels(table_name).inc(n_inputs)
    metrics.BYTES_REWRITTEN.labels(table_name).inc(bytes_out)


def landed(table: Table, plan_id: str) -> bool:
    return any(s.summary is not None and s.summary.get(PLAN_ID_KEY) == plan_id for s in table.snapshots())


def recover(ctx: JobContext, table: Table, table_name: str, partition: str, tally: Tally) -> set[str]:
    """Reconcile open plans of this partition with the catalog: finish landed ones, clean the rest.

    Returns the input paths a stopped run recorded as still to do (its resume marker), if any.
    """
    plans = ctx.store.open_plans(JOB, table_name, partition)
    resume: set[str] = set()
    if not plans:
        return resume
    table.refresh()
    for plan in plans:
        if RESUME in plan.payload:
            resume |= {path for g in plan.payload[RESUME] for path in FileGroup.from_dict(g).paths()}
            ctx.store.transition_plan(plan.plan_id, PLANNED, DONE, {"resumed_at": ctx.clock.now().isoformat()})
            continue
        group = FileGroup.from_dict(plan.payload["group"])
        staged = {e.path for e in ctx.store.entries(plan_id=plan.plan_id, kind=STAGE)}
        live = set(partition_files(table, partition))
        if landed(table, plan.plan_id) or staged & live:
            _finish(ctx, plan, table_name, len(group.inputs), int(plan.progress.get("bytes_out", 0)))
            tally.add("recovered_committed")
        else:
            remove_staged(ctx, table, plan.plan_id)
            ctx.store.transition_plan(plan.plan_id, OPEN_PLAN_STATES, ABANDONED, {"reason": "not landed"})
            tally.add("recovered_removed")
    return resume


def record_resume(ctx: JobContext, table_name: str, partition: str, groups: list[FileGroup],
                  base_snapshot_id: int | None, run_id: str | None) -> None:
    """A stopped run records the groups it did not reach; the next run continues with exactly those."""
    if groups:
        ctx.store.create_plan(JOB, table_name, partition, {RESUME: [g.to_dict() for g in groups]},
                              base_snapshot_id, run_id=run_id)


def run_group(ctx: JobContext, table: Table, table_name: str, partition: str, strategy: Strategy,
              group: FileGroup, base_snapshot_id: int | None, run_id: str | None, tally: Tally) -> bool:
    """Rewrite and commit one group. True when it committed, False when it was abandoned."""
    plan_id = str(uuid.uuid4())
    paths = output_paths(table, partition, plan_id, group.output_count)
    payload = {"strategy": strategy.to_dict(), "group": group.to_dict(), "outputs": paths}
    plan = ctx.store.create_plan(JOB, table_name, partition, payload, base_snapshot_id, run_id=run_id,
                                 plan_id=plan_id,
                                 entries={STAGE: [NewEntry(p, None, None, {"index": i}) for i, p in enumerate(paths)]})
    ctx.store.transition_plan(plan_id, PLANNED, EXECUTING)
    ids = {e.path: e.entry_id for e in ctx.store.entries(plan_id=plan_id, kind=STAGE)}

    done: list[int] = []

    def on_written(index: int, path: str, bytes_so_far: int) -> None:
        ctx.store.transition_entries([ids[path]], PENDING, WRITTEN)
        done.append(index)
        ctx.progress(f"compact {table_name} [{partition}]: wrote {len(done)}/{len(paths)} files")
        crash_point("compact.after-stage")

    props = table.properties
    level = props.get("write.parquet.compression-level")
    options = OutputOptions(schema_to_pyarrow(table.schema()), row_group_rows(group.input_bytes, group.records),
                            compression=props.get("write.parquet.compression-codec", "zstd"),
                            compression_level=int(level) if level else None)
    bytes_out = rewrite_group(table.io, group.inputs, paths, strategy, options, ctx.limiter,
                              threads=compaction_threads(), on_written=on_written)
    sort_order_id = strategy.sort_order_id if strategy.name == SORT else None
    ctx.store.transition_plan(plan_id, EXECUTING, COMMITTING, {"bytes_out": bytes_out})
    if ctx.lock is not None:
        ctx.lock.ensure_alive()
    ctx.progress(f"compact {table_name} [{partition}]: committing {len(group.inputs)} → {len(paths)} files")
    started = time.monotonic()
    try:
        table.refresh()
        current = partition_files(table, partition)
        missing = [f.path for f in group.inputs if f.path not in current]
        if missing:
            raise CommitConflictError(f"{len(missing)} input file(s) were removed concurrently, e.g. {missing[0]}")
        added = [data_file_from_parquet(table.io, table.metadata, p, sort_order_id) for p in paths]
        commit_replace(table, base_snapshot_id, [current[f.path] for f in group.inputs], added,
                       fleet_properties(plan_id, JOB))
    except CommitConflictError as exc:
        remove_staged(ctx, table, plan_id)
        ctx.store.transition_plan(plan_id, COMMITTING, ABANDONED, {"reason": str(exc)[:500]})
        tally.add("groups_abandoned")
        _log.warning("compact.group_abandoned", table=table_name, partition=partition, plan_id=plan_id,
                     files_in=len(group.inputs), reason=str(exc)[:500])
        ctx.progress(f"compact {table_name} [{partition}]: group abandoned: {exc}")
        return False
    except CommitOutcomeUnknownError as exc:
        ctx.store.transition_plan(plan_id, COMMITTING, UNKNOWN, {"reason": str(exc)[:500]})
        raise
    finally:
        metrics.COMMIT_DURATION.labels(JOB).observe(time.monotonic() - started)
    crash_point("compact.after-commit")
    ctx.store.transition_plan(plan_id, COMMITTING, COMMITTED)
    _finish(ctx, ctx.store.plan(plan_id) or plan, table_name, len(group.inputs), bytes_out)
    tally.add("groups_committed")
    tally.add("files_in", len(group.inputs))
    tally.add("files_out", len(paths))
    tally.add("bytes_in", group.input_bytes)
    tally.add("bytes_out", bytes_out)
    _log.event("compact.group", table=table_name, partition=partition, plan_id=plan_id, strategy=strategy.name,
               files_in=len(group.inputs), files_out=len(paths), bytes_in=group.input_bytes, bytes_out=bytes_out)
    return True
