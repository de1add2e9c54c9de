"""After the expire commit, before any purge row becomes eligible: did a ref vanish that the plan did not expire?

The commit is pinned to the metadata it was planned on, but a REST catalog only sees the serialized
requirements (main's head unchanged): a tag created between planning and commit that points at an expired
snapshot is dropped by RemoveSnapshots without any error. So the metadata our commit produced is compared with
the metadata it replaced (the entry before it in the metadata log): every ref that existed before and is gone
now, other than the plan's expired refs, is lost. The files reachable from a lost ref's snapshot (and its
ancestors) are never purged: their purge rows stay pending and inert (protected from the orphan scan too), and
the run fails naming the ref, so an operator can restore it from the metadata file named in the error.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from pyiceberg.serializers import FromInputFile
from pyiceberg.table.metadata import TableMetadata
from pyiceberg.table.snapshots import Snapshot, ancestors_of

from lifecycle.expiration.commit import PLAN_PROPERTY
from lifecycle.iceberg.reachability import ManifestCache, reachable_from


@dataclass(frozen=True)
class RefCheck:
    lost: dict[str, int] = field(default_factory=dict)   # ref name -> the snapshot it pointed at
    before_location: str | None = None                   # the metadata file the commit replaced
    held_paths: frozenset[str] = frozenset()              # files the lost refs still read: never purged
    undecidable: str | None = None                        # why the check could not be made (then hold all)

    @property
    def ok(self) -> bool:
        return not self.lost and self.undecidable is None


def _read(io: Any, location: str) -> TableMetadata:
    return FromInputFile.table_metadata(io.new_input(location))


def _commit_pair(io: Any, current: TableMetadata, plan_id: str) -> tuple[TableMetadata, TableMetadata, str] | None:
    """(the metadata our commit replaced, the metadata it produced, the replaced file's location), found by
    walking the metadata log back from the current metadata to the first metadata carrying our plan id."""
    newer = current
    for entry in reversed(current.metadata_log):
        older = _read(io, entry.metadata_file)
        if newer.properties.get(PLAN_PROPERTY) == plan_id and older.properties.get(PLAN_PROPERTY) != plan_id:
            return older, newer, entry.metadata_file
        newer = older
    return None


def check_refs(table: Any, plan_id: str, expired_refs: Iterable[str]) -> RefCheck:
    expected = set(expired_refs)
    pair = _commit_pair(table.io, table.metadata, plan_id)
    if pair is None:
        return RefCheck(undecidable=f"the metadata before plan {plan_id}'s commit is no longer in the log")
    before, after, location = pair
    lost = {name: ref.snapshot_id for name, ref in before.refs.items()
            if name not in after.refs and name not in expected}
    if not lost:
        return RefCheck(before_location=location)
    kept: list[Snapshot] = []
    for snapshot_id in lost.values():
        head = before.snapshot_by_id(snapshot_id)
        kept.extend(ancestors_of(head, before) if head is not None else ())
    held = reachable_from(table.io, before, kept, ManifestCache(light=False)).all_paths()
    return RefCheck(lost=lost, before_location=location, held_paths=frozenset(held))
