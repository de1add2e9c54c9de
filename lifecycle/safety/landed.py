"""Did a plan's commit land? Decided from the table itself, never from "a snapshot with my plan id exists".

A plan that staged files (compaction outputs, rewritten manifests and their manifest list) landed when any of
those files is reachable from the table's current metadata: any snapshot of any branch or tag, any retained
snapshot, any manifest. A snapshot carrying the plan id may since have been expired while later snapshots
still read the files (a rewrite-manifests commit, then a short retention), or the plan's outputs may have been
compacted again: only reachability answers. If none is reachable, nothing can read them and the plan's
staged files may go (a file an expiration queued for purge is left to purge and its cold copy).

Reachability here is read with the reference decoders only (`ManifestCache(light=False)`), as every check
that can lead to a delete is.

A plan whose commit outcome is unknown is reconciled only once it is settled: with a catalog whose commit is
one database transaction (the SQL catalog), a dead worker's commit can no longer land; with any other catalog
(REST, Glue, ...) a request may still be applied after its client died, so the plan waits `UNSETTLED_GRACE`.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from lifecycle.iceberg.reachability import ManifestCache, live_set
from lifecycle.safety.paths import LiveIndex, PathSet, Schemes

UNSETTLED_GRACE = timedelta(minutes=15)


@dataclass
class LiveSets:
    """The live set of the last metadata file seen: recomputed only when the metadata location moves."""

    cache: ManifestCache = field(default_factory=lambda: ManifestCache(light=False))
    metadata_location: str | None = None
    paths: set[str] = field(default_factory=set)
    _index: LiveIndex | None = None
    _pathset: PathSet | None = None

    def refresh(self, table: Any) -> set[str]:
        if table.metadata_location != self.metadata_location or self.metadata_location is None:
            self.paths = live_set(table.io, table.metadata, table.metadata_location, self.cache)
            self.metadata_location = table.metadata_location
            self._index = self._pathset = None
        return self.paths

    def index(self, table: Any, schemes: Schemes) -> LiveIndex:
        """The live set for the orphan scan (detects scheme/authority mismatches)."""
        self.refresh(table)
        if self._index is None or self._index.schemes != schemes:
            self._index = LiveIndex(self.paths, schemes)
        return self._index

    def pathset(self, table: Any, schemes: Schemes) -> PathSet:
        """The live set for membership tests by path identity."""
        self.refresh(table)
        if self._pathset is None or self._pathset.schemes != schemes:
            self._pathset = PathSet(self.paths, schemes)
        return self._pathset


def reachable(table: Any, paths: Iterable[str], live: LiveSets, schemes: Schemes) -> list[str]:
    """Those of `paths` the table can still read (or whose metadata it still lists)."""
    members = live.pathset(table, schemes)
    return [p for p in paths if p in members]


def landed(table: Any, staged: Iterable[str], live: LiveSets, schemes: Schemes) -> bool:
    """True when any staged file of the plan is reachable from the table's current metadata."""
    return bool(reachable(table, staged, live, schemes))


def settled(catalog: Any, updated_at: datetime, now: datetime) -> bool:
    """May a plan whose commit outcome is unknown be reconciled now? (see the module docstring)"""
    from pyiceberg.catalog.sql import SqlCatalog

    return isinstance(catalog, SqlCatalog) or now - updated_at >= UNSETTLED_GRACE
