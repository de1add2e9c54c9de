"""The rewrite-manifests planner on its own (no service needed): when a table counts as compact."""

from __future__ import annotations

from typing import Any

from pyiceberg.manifest import ManifestContent, ManifestFile
from pyiceberg.table.metadata import new_table_metadata
from pyiceberg.table.refs import SnapshotRef, SnapshotRefType
from pyiceberg.table.snapshots import Operation, Snapshot, Summary
from pyiceberg.table.sorting import UNSORTED_SORT_ORDER

from lifecycle.manifests.plan import ManifestPlan, plan_rewrite
from lifecycle_cli.synth import SCHEMA, SPEC

TARGET = 16 * 1024


def _metadata(with_snapshot: bool = True) -> Any:
    meta = new_table_metadata(SCHEMA, SPEC, UNSORTED_SORT_ORDER, "file:///warehouse/t", {})
    if not with_snapshot:
        return meta
    snap = Snapshot(snapshot_id=7, sequence_number=1, timestamp_ms=1, manifest_list="file:///warehouse/t/l.avro",
                    summary=Summary(Operation.APPEND))
    main = SnapshotRef(snapshot_id=7, snapshot_ref_type=SnapshotRefType.BRANCH)
    return meta.model_copy(update={"snapshots": [snap], "current_snapshot_id": 7, "refs": {"main": main}})


def _manifest(i: int, length: int, content: ManifestContent = ManifestContent.DATA, spec_id: int = 0) -> Any:
    return ManifestFile.from_args(manifest_path=f"file:///warehouse/t/m{i}.avro", manifest_length=length,
                                  partition_spec_id=spec_id, content=content, sequence_number=1,
                                  min_sequence_number=1, added_snapshot_id=7, added_files_count=1,
                                  existing_files_count=2)


def test_many_small_manifests_are_not_compact() -> None:
    plan = plan_rewrite("archive.t", _metadata(), [_manifest(i, 5_000) for i in range(200)], TARGET)
    assert plan is not None and not plan.compact
    assert plan.bound == -(-200 * 5_000 // TARGET) + 1
    assert plan.entries == 600 and plan.base_snapshot_id == 7


def test_manifests_at_the_target_are_compact_and_delete_manifests_do_not_count() -> None:
    manifests = [_manifest(i, TARGET + 100) for i in range(10)] + [_manifest(10, 3_000)]
    manifests += [_manifest(20 + i, 900, ManifestContent.DELETES) for i in range(30)]
    plan = plan_rewrite("archive.t", _metadata(), manifests, TARGET)
    assert plan is not None and plan.compact
    assert plan.data_manifests == 11 and plan.delete_manifests == 30


def test_one_extra_manifest_per_spec_is_allowed() -> None:
    manifests = [_manifest(i, 4_000, spec_id=i % 3) for i in range(3)]
    plan = plan_rewrite("archive.t", _metadata(), manifests, TARGET)
    assert plan is not None and plan.compact and plan.spec_ids == (0, 1, 2)
    assert ManifestPlan.from_dict(plan.to_dict()) == plan


def test_table_without_snapshot_has_nothing_to_plan() -> None:
    assert plan_rewrite("archive.t", _metadata(with_snapshot=False), [], TARGET) is None
