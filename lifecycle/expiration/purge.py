"""`purge` (phase 2): journal rows past eligibility → re-verify unreachable → cold copy → record → delete.

Each step is journaled (pending → copied → deleted, or skipped), so a crash anywhere resumes: a row whose
cold copy is already recorded is not copied again; a row marked copied is only deleted; deleting a
missing file counts as done. Before any delete the cold copy is checked to be there.

Rows are read in batches by entry id (memory bounded by a batch, not the backlog), and their final states are
written once per batch: a crash before that only makes the next run find the cold copy already recorded and
the file already gone, which it records without copying or deleting anything again. The live set is built
once per run from the table's current metadata and rebuilt only when the metadata moves (a commit or a
rollback may revive a file); its manifests are cached, so a rebuild reads only what is new. Paths are
compared through the one path identity (lifecycle.safety.paths): a file Spark recorded as `file:/...`
under a `file:///...` location is inside it, and a path whose identity cannot be decided is skipped, never
deleted. A table with `gc.enabled=false` has nothing purged (the run refuses; its rows stay held).
"""

from __future__ import annotations

import json
from collections import defaultdict
from typing import Any

from lifecycle import log, metrics
from lifecycle.errors import LifecycleError, UnsafeDeleteError
from lifecycle.expiration.coldtier import ColdTier, cold_tier
from lifecycle.faults import crash_point
from lifecycle.jobs.base import DONE, DRY_RUN, NOTHING_TO_DO, JobContext, JobRequest, JobResult
from lifecycle.safety.deletes import TableFiles, check_gc_enabled, delete_files
from lifecycle.safety.landed import LiveSets
from lifecycle.safety.paths import relative_to
from lifecycle.state.models import COPIED, DELETED, PENDING, PURGE, SKIPPED, ColdObject, JournalEntry

JOB = "purge"
KIND = PURGE
BATCH = 500
_log = log.get("lifecycle.purge")


def run_purge(ctx: JobContext, req: JobRequest) -> JobResult:
    if not req.dry_run:
        ctx.checkpoint(JOB)   # a scheduled run outside 00:00-06:00 stops here
    now = ctx.clock.now()
    counts: dict[str, int | float] = {"copied": 0, "deleted": 0, "skipped": 0, "gone": 0, "bytes_copied": 0}
    eligible = ctx.store.count_entries(KIND, req.table, [PENDING, COPIED], eligible_before=now)
    counts["not_yet_eligible"] = ctx.store.count_entries(KIND, req.table, [PENDING]) - ctx.store.count_entries(
        KIND, req.table, [PENDING], eligible_before=now)
    if req.dry_run:
        first = ctx.store.entries(kind=KIND, table_name=req.table, states=[PENDING, COPIED], eligible_before=now,
                                  limit=200)
        return JobResult(JOB, req.table, None, DRY_RUN, {**counts, "eligible": eligible},
                         plan={"eligible": [{"path": e.path, "state": e.state, "bytes": e.bytes} for e in first]})
    if not eligible:
        return JobResult(JOB, req.table, None, NOTHING_TO_DO, counts)
    table = ctx.catalog.load_table(req.table)
    check_gc_enabled(table.properties, req.table, JOB)   # refuse before anything is copied or deleted
    tier = cold_tier(ctx.settings.cold_tier_uri, ctx.settings.cold_tier.storage_class, ctx.limiter,
                     dict(table.io.properties))
    live = LiveSets()
    after = done = 0
    while True:
        ctx.checkpoint(JOB)
        batch = ctx.store.entries(kind=KIND, table_name=req.table, states=[PENDING, COPIED], eligible_before=now,
                                  after_entry_id=after, limit=BATCH)
        if not batch:
            break
        after = batch[-1].entry_id
        table = table.refresh()   # re-verify against CURRENT metadata: a rollback may have revived a file
        check_gc_enabled(table.properties, req.table, JOB)
        files = TableFiles.of(table, req.table, ctx.schemes())
        members = live.pathset(table, files.schemes)
        recorded = ctx.store.recorded_cold(req.table, [e.path for e in batch])
        marks: Marks = defaultdict(list)
        try:
            for entry in batch:
                _purge_one(ctx, files, tier, entry, entry.path in members, recorded, counts, marks)
        finally:
            for (state, info), ids in marks.items():
                ctx.store.transition_entries(ids, [PENDING, COPIED], state, json.loads(info))
        done += len(batch)
        ctx.progress(f"purge {req.table}: {counts['deleted']} deleted, {counts['copied']} copied", done, eligible,
                     "files")
    return JobResult(JOB, req.table, None, DONE, counts)


Marks = dict[tuple[str, str], list[int]]   # (final state, info as JSON) -> journal entry ids


def _mark(marks: Marks, entry: JournalEntry, state: str, info: dict[str, str] | None = None) -> None:
    marks[(state, json.dumps(info or {}, sort_keys=True))].append(entry.entry_id)


def _purge_one(ctx: JobContext, files: TableFiles, tier: ColdTier, entry: JournalEntry, revived: bool,
               recorded: set[str], counts: dict[str, int | float], marks: Marks) -> None:
    if revived:
        _mark(marks, entry, SKIPPED, {"reason": "reachable again from current metadata (revived)"})
        counts["skipped"] += 1
        return
    try:
        relative = f"{files.identifier.replace('.', '/')}/{relative_to(entry.path, files.prefix, files.schemes)}"
    except UnsafeDeleteError as exc:
        _mark(marks, entry, SKIPPED, {"reason": f"never deleted: {exc}"})
        counts["skipped"] += 1
        return
    io = files.io
    state = entry.state
    held = False   # the cold copy was seen (or made) in this run
    if state == PENDING and entry.path in recorded and tier.holds(relative):
        state, held = COPIED, True   # a previous run copied and recorded it
    if state == COPIED and not held:
        if not tier.holds(relative):
            if not io.new_input(entry.path).exists():
                raise UnsafeDeleteError(f"purge {files.identifier}: {entry.path} is gone and its cold copy is missing")
            _copy(ctx, files.identifier, io, tier, entry, relative, counts)   # the cold copy vanished: copy again
        held = True
    if state == PENDING:
        if not io.new_input(entry.path).exists():
            _mark(marks, entry, DELETED, {"note": "already gone before purge: never copied to the cold tier"})
            counts["gone"] += 1
            return
        _copy(ctx, files.identifier, io, tier, entry, relative, counts)
        state, held = COPIED, True
    if not held:   # unreachable by construction; the last guard before a delete
        raise UnsafeDeleteError(f"purge {files.identifier}: no cold copy of {entry.path}; refusing to delete it")
    outcome = delete_files([entry.path], files, JOB)
    if outcome.failed:
        _mark(marks, entry, COPIED)
        raise LifecycleError(f"purge {files.identifier}: deleting {entry.path} failed: {outcome.failed[entry.path]};"
                             " it stays journaled (copied) for the next run")
    crash_point("purge.after-delete")
    _mark(marks, entry, DELETED)
    metrics.FILES_PURGED.labels(files.identifier).inc()
    counts["deleted"] += 1


def _copy(ctx: JobContext, table_name: str, io: Any, tier: ColdTier, entry: JournalEntry, relative: str,
          counts: dict[str, int | float]) -> None:
    """Copy, then record in the cold-tier catalog (an upsert by source path: a repeat never duplicates)."""
    copied = tier.copy(io, entry.path, relative)
    crash_point("purge.after-copy")
    ctx.store.record_cold(ColdObject(
        table_name, tuple(int(s) for s in entry.info.get("snapshot_ids", [])), entry.path, copied.cold_uri,
        copied.bytes, copied.checksum, copied.storage_class, ctx.clock.now(), entry.plan_id))
    crash_point("purge.after-record")
    metrics.COLD_FILES.labels(table_name).inc()
    metrics.COLD_BYTES.labels(table_name).inc(copied.bytes)
    counts["copied"] += 1
    counts["bytes_copied"] += copied.bytes
