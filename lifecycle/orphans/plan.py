"""Guards from the catalog and the state store, and the scan that turns a listing into candidates."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from pyiceberg.table import Table

from lifecycle.errors import GcDisabledError
from lifecycle.jobs.base import JobContext
from lifecycle.orphans.classify import Classification, Guards, classify_all
from lifecycle.orphans.listing import list_files
from lifecycle.orphans.paths import LiveIndex, Schemes, location_prefix
from lifecycle.progress import counted
from lifecycle.reachability import ManifestCache, live_set
from lifecycle.state.models import COPIED, KEPT, PENDING, REMOVED, WRITTEN
from lifecycle.state.writers import active_writers

JOB = "clean-orphans"
STAGE_KINDS = ("stage", "stage-manifest")
STAGE_STATES = (PENDING, WRITTEN)
PURGE_KINDS = ("purge",)
# "Any state but deleted/skipped": every other state a purge entry could be in, listed explicitly.
PURGE_STATES = (PENDING, COPIED, WRITTEN, REMOVED, KEPT, "committed")


def check_gc_enabled(table: Table, identifier: str) -> None:
    if str(table.properties.get("gc.enabled", "true")).strip().lower() == "false":
        raise GcDisabledError(f"clean-orphans: table {identifier} has gc.enabled=false; refusing to delete its files")


def schemes_for(ctx: JobContext) -> Schemes:
    return Schemes(ctx.settings.orphans.equivalent_schemes)


@dataclass
class LiveCache:
    """The live set of the last metadata file seen: recomputed only when the metadata location moves."""

    # reference decoders only: the orphan scan deletes what this set does not hold
    cache: ManifestCache = field(default_factory=lambda: ManifestCache(light=False))
    metadata_location: str | None = None
    index: LiveIndex | None = None

    def index_for(self, table: Table, schemes: Schemes) -> LiveIndex:
        if self.index is None or table.metadata_location != self.metadata_location:
            live = live_set(table.io, table.metadata, table.metadata_location, self.cache)
            self.index = LiveIndex(live, schemes)
            self.metadata_location = table.metadata_location
        return self.index


def build_guards(ctx: JobContext, identifier: str, table: Table, live: LiveCache, age_check: bool = True) -> Guards:
    ts = ctx.table_settings(identifier)
    schemes = schemes_for(ctx)
    with ctx.store.cursor() as cur:
        writers = active_writers(cur.connection, ctx.clock, ts.writer_heartbeat_ttl_seconds)
    now = ctx.clock.now()
    cutoff = (now - timedelta(days=ts.orphan_min_age_days)).timestamp() if age_check else None
    return Guards(
        location=location_prefix(table.location()),
        live=live.index_for(table, schemes),
        schemes=schemes,
        staged=Guards.keys(ctx.store.guarded_paths(identifier, STAGE_KINDS, STAGE_STATES)),
        purge=Guards.keys(ctx.store.guarded_paths(identifier, PURGE_KINDS, PURGE_STATES)),
        writer_prefixes=tuple(sorted(Guards.keys(p for w in writers for p in w.in_progress_paths))),
        cutoff=cutoff,
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


def scan(ctx: JobContext, identifier: str, table: Table, live: LiveCache) -> Scan:
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
