"""`purge` (phase 2): journal rows past eligibility → re-verify unreachable → cold copy → record → delete.

Each step is journaled (pending → copied → deleted, or skipped), so a crash anywhere resumes: a row whose
cold copy is already recorded is not copied again; a row marked copied is only deleted; deleting a
missing file counts as done. Before any delete the cold copy is checked to be there.
"""

from __future__ import annotations

from typing import Any

from lifecycle import log, metrics
from lifecycle.errors import UnsafeDeleteError
from lifecycle.expiration.coldtier import ColdTier, cold_tier
from lifecycle.faults import crash_point
from lifecycle.jobs.base import DONE, DRY_RUN, NOTHING_TO_DO, JobContext, JobRequest, JobResult
from lifecycle.reachability import live_set, verification_cache
from lifecycle.state.models import COPIED, DELETED, PENDING, SKIPPED, ColdObject, JournalEntry

JOB = "purge"
KIND = "purge"
BATCH = 200
_log = log.get("lifecycle.purge")


def run_purge(ctx: JobContext, req: JobRequest) -> JobResult:
    if not req.dry_run:
        ctx.checkpoint(JOB)   # a scheduled run outside 00:00-06:00 stops here
    now = ctx.clock.now()
    counts: dict[str, int | float] = {"copied": 0, "deleted": 0, "skipped": 0, "gone": 0, "bytes_copied": 0}
    eligible = ctx.store.entries(kind=KIND, table_name=req.table, states=[PENDING, COPIED], eligible_before=now)
    waiting = len(ctx.store.entries(kind=KIND, table_name=req.table, states=[PENDING]))
    counts["not_yet_eligible"] = waiting - sum(1 for e in eligible if e.state == PENDING)
    if req.dry_run:
        return JobResult(JOB, req.table, None, DRY_RUN, {**counts, "eligible": len(eligible)},
                         plan={"eligible": [{"path": e.path, "state": e.state, "bytes": e.bytes}
                                            for e in eligible[:200]]})
    if not eligible:
        return JobResult(JOB, req.table, None, NOTHING_TO_DO, counts)
    table = ctx.catalog.load_table(req.table)
    tier = cold_tier(ctx.settings.cold_tier_uri, ctx.settings.cold_tier.storage_class, ctx.limiter,
                     dict(table.io.properties))
    location = table.location().rstrip("/") + "/"
    table_dir = req.table.replace(".", "/")
    for start in range(0, len(eligible), BATCH):
        ctx.checkpoint(JOB)
        batch = eligible[start:start + BATCH]
        table = table.refresh()   # re-verify against CURRENT metadata: a rollback may have revived a file
        # reference decoders only: the check that decides a delete never rests on the light Avro readers
        live = live_set(table.io, table.metadata, table.metadata_location, verification_cache())
        recorded = _recorded(ctx, req.table, [e.path for e in batch])
        for entry in batch:
            _purge_one(ctx, req.table, table.io, tier, entry, live, recorded, location, table_dir, counts)
        ctx.progress(f"purge {req.table}: {counts['deleted']} deleted", start + len(batch), len(eligible), "files")
    return JobResult(JOB, req.table, None, DONE, counts)


def _recorded(ctx: JobContext, table: str, paths: list[str]) -> set[str]:
    with ctx.store.cursor() as cur:
        cur.execute("SELECT source_path FROM cold_objects WHERE table_name = %s AND source_path = ANY(%s)",
                    (table, paths))
        return {r["source_path"] for r in cur.fetchall()}


def _purge_one(ctx: JobContext, table_name: str, io: Any, tier: ColdTier, entry: JournalEntry, live: set[str],
               recorded: set[str], location: str, table_dir: str, counts: dict[str, int | float]) -> None:
    if entry.path in live:
        ctx.store.transition_entries([entry.entry_id], entry.state, SKIPPED,
                                     {"reason": "reachable again from current metadata (revived)"})
        counts["skipped"] += 1
        return
    if not entry.path.startswith(location):
        ctx.store.transition_entries([entry.entry_id], entry.state, SKIPPED,
                                     {"reason": f"outside the table location {location}: never deleted"})
        counts["skipped"] += 1
        return
    relative = f"{table_dir}/{entry.path[len(location):]}"
    state = entry.state
    held = False   # the cold copy was seen (or made) in this run
    if state == PENDING and entry.path in recorded and tier.holds(relative):
        ctx.store.transition_entries([entry.entry_id], PENDING, COPIED, {"note": "cold copy already recorded"})
        state, held = COPIED, True
    if state == COPIED and not held:
        if not tier.holds(relative):
            if not io.new_input(entry.path).exists():
                raise UnsafeDeleteError(f"purge {table_name}: {entry.path} is gone and its cold copy is missing")
            _copy(ctx, table_name, io, tier, entry, relative, counts)   # the cold copy vanished: copy again
        held = True
    if state == PENDING:
        if not io.new_input(entry.path).exists():
            ctx.store.transition_entries([entry.entry_id], PENDING, DELETED,
                                         {"note": "already gone before purge: never copied to the cold tier"})
            counts["gone"] += 1
            return
        _copy(ctx, table_name, io, tier, entry, relative, counts)
        ctx.store.transition_entries([entry.entry_id], PENDING, COPIED)
        state, held = COPIED, True
    if not held:   # unreachable by construction; the last guard before a delete
        raise UnsafeDeleteError(f"purge {table_name}: no cold copy of {entry.path}; refusing to delete it")
    _delete(io, entry.path)
    crash_point("purge.after-delete")
    ctx.store.transition_entries([entry.entry_id], state, DELETED)
    metrics.FILES_PURGED.labels(table_name).inc()
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


def _delete(io: Any, path: str) -> None:
    try:
        io.delete(path)
    except FileNotFoundError:
        pass
    except OSError as exc:
        if "not found" not in str(exc).lower() and "no such" not in str(exc).lower():
            raise
