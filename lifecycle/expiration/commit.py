"""Phase-1 commit: ONE metadata-only commit removing the expired snapshots and refs.

PyIceberg's RemoveSnapshotsUpdate also drops the snapshot-log entries of the removed snapshots and their
statistics files; partition-statistics entries are removed here explicitly. The commit adds no snapshot,
so its lineage is carried as a table property: `lifecycle.expire.plan-id` = the plan id. After a crash,
a plan whose id is that property (or whose expired ids are all gone) is recognised as landed.

The commit's requirements pin it to the exact metadata the plan was computed from: the table UUID, the
head of `main`, and (checked by the catalog before its compare-and-swap) the same refs and the same set
of snapshots. Any concurrent commit, rollback or new tag makes it fail; the job then re-plans.
"""

from __future__ import annotations

from typing import Any

from pydantic import PrivateAttr
from pyiceberg.exceptions import CommitFailedException
from pyiceberg.table import Table
from pyiceberg.table.metadata import TableMetadata
from pyiceberg.table.refs import MAIN_BRANCH
from pyiceberg.table.update import (
    AssertRefSnapshotId,
    AssertTableUUID,
    RemovePartitionStatisticsUpdate,
    RemoveSnapshotRefUpdate,
    RemoveSnapshotsUpdate,
    SetPropertiesUpdate,
)

from lifecycle.expiration.plan import ExpirePlan

PLAN_PROPERTY = "lifecycle.expire.plan-id"


class AssertMetadataUnchanged(AssertRefSnapshotId):
    """Asserts `main`'s head (what a REST catalog sees when this is serialized) and, in catalogs that
    validate requirements in-process (SQL, Glue, Hive...), every ref and the whole snapshot-id set."""

    _refs: dict[str, int] = PrivateAttr(default_factory=dict)
    _snapshot_ids: frozenset[int] = PrivateAttr(default_factory=frozenset)

    @classmethod
    def of(cls, metadata: TableMetadata) -> AssertMetadataUnchanged:
        main = metadata.refs.get(MAIN_BRANCH)
        req = cls(ref=MAIN_BRANCH, snapshot_id=main.snapshot_id if main else None)
        req._refs = {name: ref.snapshot_id for name, ref in metadata.refs.items()}
        req._snapshot_ids = frozenset(s.snapshot_id for s in metadata.snapshots)
        return req

    # PyIceberg's TableRequirement.validate shadows pydantic's deprecated classmethod BaseModel.validate
    def validate(self, base_metadata: TableMetadata | None) -> None:  # type: ignore[override]  # see above
        super().validate(base_metadata)
        assert base_metadata is not None
        refs = {name: ref.snapshot_id for name, ref in base_metadata.refs.items()}
        if refs != self._refs:
            raise CommitFailedException("Requirement failed: refs changed since expiration was planned")
        if frozenset(s.snapshot_id for s in base_metadata.snapshots) != self._snapshot_ids:
            raise CommitFailedException("Requirement failed: snapshots changed since expiration was planned")


def commit_expiration(table: Table, base: TableMetadata, plan: ExpirePlan, plan_id: str) -> None:
    """Raises CommitFailedException on a concurrent change (nothing committed)."""
    ids = set(plan.selection.expire_ids)
    updates: list[Any] = [RemoveSnapshotRefUpdate(ref_name=name) for name in plan.selection.expired_refs]
    updates += [RemovePartitionStatisticsUpdate(snapshot_id=p.snapshot_id)
                for p in base.partition_statistics if p.snapshot_id in ids]
    if ids:
        updates.append(RemoveSnapshotsUpdate(snapshot_ids=sorted(ids)))
    updates.append(SetPropertiesUpdate(updates={PLAN_PROPERTY: plan_id}))
    requirements = (AssertTableUUID(uuid=base.table_uuid), AssertMetadataUnchanged.of(base))
    table.catalog.commit_table(table, requirements=requirements, updates=tuple(updates))


def expiration_visible(metadata: TableMetadata, plan_id: str, expire_ids: list[int]) -> bool:
    """Did this plan's metadata-only commit land? Our property says so, or none of its snapshots is left (it
    stages no file; the files it drives to purge are re-checked against the live set before any delete)."""
    if metadata.properties.get(PLAN_PROPERTY) == plan_id:
        return True
    present = {s.snapshot_id for s in metadata.snapshots}
    return bool(expire_ids) and not any(i in present for i in expire_ids)
