"""Commit the rewritten manifests: one `replace` snapshot whose manifest list holds the new data manifests and
the base snapshot's delete manifests, committed with AddSnapshotUpdate + SetSnapshotRefUpdate(main) under an
AssertRefSnapshotId(main = base) requirement (PyIceberg's snapshot producers refuse REPLACE)."""

from __future__ import annotations

from typing import Any

from pyiceberg.manifest import ManifestContent, ManifestFile, write_manifest_list
from pyiceberg.table import Table
from pyiceberg.table.refs import SnapshotRefType
from pyiceberg.table.snapshots import Operation, Snapshot, Summary
from pyiceberg.table.update import AddSnapshotUpdate, AssertRefSnapshotId, AssertTableUUID, SetSnapshotRefUpdate

from lifecycle.clock import Clock, to_millis
from lifecycle.identity import fleet_properties
from lifecycle.lineage import guard_catalog
from lifecycle.manifests.execute import avro_codec, manifest_dir
from lifecycle.manifests.plan import JOB

_TOTALS = ("total-records", "total-files-size", "total-data-files", "total-delete-files",
           "total-position-deletes", "total-equality-deletes")


def committed_snapshot(metadata: Any, plan_id: str) -> Snapshot | None:
    """The snapshot this plan committed, if it is still in the metadata (for the record only: whether the
    plan landed is decided by lifecycle.safety.landed)."""
    for snap in metadata.snapshots:
        if snap.summary is not None and snap.summary.additional_properties.get("lifecycle.plan-id") == plan_id:
            return snap  # type: ignore[no-any-return]  # `metadata` is any TableMetadata version
    return None


def manifest_list_path(table: Table, plan_id: str, snapshot_id: int) -> str:
    return f"{manifest_dir(table)}/snap-{snapshot_id}-1-{plan_id}.avro"


def commit_rewrite(catalog: Any, table: Table, clock: Clock, plan_id: str, snapshot_id: int,
                   base_manifests: list[ManifestFile], new_manifests: list[ManifestFile]) -> Snapshot:
    """Write the manifest list (journaled by the caller) and commit; PyIceberg's exceptions propagate."""
    meta = table.metadata
    base = meta.current_snapshot()
    if base is None:
        raise ValueError(f"rewrite-manifests {table.name()}: the table has no current snapshot")
    kept = [m for m in base_manifests if m.content != ManifestContent.DATA]
    replaced = len(base_manifests) - len(kept)
    seq = meta.next_sequence_number()
    list_path = manifest_list_path(table, plan_id, snapshot_id)
    compression = avro_codec(meta.properties)
    with write_manifest_list(format_version=meta.format_version, output_file=table.io.new_output(list_path),
                             snapshot_id=snapshot_id, parent_snapshot_id=base.snapshot_id, sequence_number=seq,
                             avro_compression=compression) as writer:
        writer.add_manifests(new_manifests + kept)
    parent = base.summary.additional_properties if base.summary is not None else {}
    props = {k: parent[k] for k in _TOTALS if k in parent}
    props.update({
        "manifests-created": str(len(new_manifests)), "manifests-replaced": str(replaced),
        "manifests-kept": str(len(kept)),
        "entries-processed": str(sum(m.existing_files_count or 0 for m in new_manifests)),
        **fleet_properties(plan_id, JOB),
    })
    snap = Snapshot(snapshot_id=snapshot_id, parent_snapshot_id=base.snapshot_id, sequence_number=seq,
                    timestamp_ms=max(to_millis(clock.now()), meta.last_updated_ms + 1), manifest_list=list_path,
                    summary=Summary(operation=Operation.REPLACE, **props), schema_id=meta.current_schema_id)
    requirements = (AssertTableUUID(uuid=meta.table_uuid),
                    AssertRefSnapshotId(ref="main", snapshot_id=base.snapshot_id))
    updates = (AddSnapshotUpdate(snapshot=snap),
               SetSnapshotRefUpdate(ref_name="main", type=SnapshotRefType.BRANCH, snapshot_id=snapshot_id,
                                    max_ref_age_ms=None, max_snapshot_age_ms=None, min_snapshots_to_keep=None))
    guard_catalog(catalog).commit_table(table, requirements, updates)
    return snap
