"""Guards from the catalog and the state store, and the scan that turns a listing into candidates."""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from pyiceberg.table import Table

from lifecycle.jobs.base import JobContext
from lifecycle.orphans.classify import Classification, Guards, classify_all, hidden_partition_prefixes
from lifecycle.orphans.listing import list_files
from lifecycle.progress import counted
from lifecycle.safety.deletes import check_gc_enabled as _check_gc
from lifecycle.safety.landed import LiveSets
from lifecycle.safety.paths import Schemes, location_prefix
from lifecycle.state.models import COPIED, KEPT, PENDING, PURGE, REMOVED, STAGED_KINDS, STAGED_OPEN_STATES, WRITTEN
from lifecycle.state.writers import active_writers

JOB = "clean-orphans"
STAGE_KINDS = STAGED_KINDS
STAGE_STATES = STAGED_OPEN_STATES
PURGE_KINDS = (PURGE,)
# "Any state but deleted/skipped": every other state a purge entry could be in, listed explicitly.
PURGE_STATES = (PENDING, COPIED, WRITTEN, REMOVED, KEPT, "committed")


def check_gc_enabled(table: Table, identifier: str) -> None:
    _check_gc(table.properties, identifier, JOB)


def schemes_for(ctx: JobContext) -> Schemes:
    return ctx.schemes()


def build_guards(ctx: JobContext, identifier: str, table: Table, live: LiveSets, age_check: bool = True) -> Guards:
    ts = ctx.table_settings(identifier)
    schemes = schemes_for(ctx)
    with ctx.store.cursor() as cur:
        writers = active_writers(cur.connection, ctx.clock, ts.writer_heartbeat_ttl_seconds,
                                 ctx.settings.fleet.max_clock_skew_seconds)
    now = ctx.clock.now()
    cutoff = (now - timedelta(days=ts.orphan_min_age_days)).timestamp() if age_check else None
    return Guards(
        location=location_prefix(table.location()),
        live=live.index(table, schemes),
        schemes=schemes,
        staged=Guards.keys(ctx.store.guarded_paths(identifier, STAGE_KINDS, STAGE_STATES)),
        purge=Guards.keys(ctx.store.guarded_paths(identifier, PURGE_KINDS, PURGE_STATES)),
        writer_prefixes=tuple(sorted(Guards.keys(p for w in writers for p in w.in_progress_paths))),
        cutoff=cutoff,
        hidden_partitions=hidden_partition_prefixes(
            f.name for spec in table.metadata.partition_specs for f in spec.fields),
    )


@dataclass
class Scan:
    location: str
    snapshot_id: int | None
    result: Classification
    now: float
    seconds: dict[str, float]

    def to_plan(self) -> dict[str, Any]:
        """The dry-run report: candidates with size and age, and what each guard kept."""
        return {
            "location": self.location,
            "snapshot_id": self.snapshot_id,
            "listed": self.result.listed,
            "live": self.result.counts["live"],
            "kept": self.result.kept(),
            "candidate_count": len(self.result.candidates),
            "candidate_bytes": self.result.candidate_bytes,
            "candidates": [
                {"path": f.path, "bytes": f.size,
                 "age_days": round((self.now - f.mtime) / 86400, 3) if f.mtime is not None else None}
                for f in self.result.candidates
            ],
        }


def scan(ctx: JobContext, identifier: str, table: Table, live: LiveSets) -> Scan:
    """Guards (fresh metadata, live set, journal, writers) first, then the listing streams through them,
    keeping only candidates in memory. A file committed while we list looks unreachable here, but the
    fresh re-check before each delete batch keeps it."""
    t0 = time.monotonic()
    table = table.refresh()
    check_gc_enabled(table, identifier)
    guards = build_guards(ctx, identifier, table, live)
    t1 = time.monotonic()
    listing = counted(list_files(table.location(), table.io.properties),
                      lambda n: ctx.progress(f"clean-orphans {identifier}: listed {n} objects", n, None, "objects"))
    result = classify_all(listing, guards)
    t2 = time.monotonic()
    snap = table.metadata.current_snapshot_id
    return Scan(table.location(), snap, result, ctx.clock.now().timestamp(),
                {"live_set": t1 - t0, "list_and_classify": t2 - t1})
