"""Which snapshots expiration selects: retention age, minimum kept, refs' own limits, pins."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from pyiceberg.partitioning import UNPARTITIONED_PARTITION_SPEC
from pyiceberg.schema import Schema
from pyiceberg.table.metadata import TableMetadata, new_table_metadata
from pyiceberg.table.refs import SnapshotRef, SnapshotRefType
from pyiceberg.table.snapshots import Operation, Snapshot, Summary
from pyiceberg.table.sorting import UNSORTED_SORT_ORDER
from pyiceberg.types import LongType, NestedField

from lifecycle.clock import to_millis
from lifecycle.errors import ConfigError
from lifecycle.expiration.retention import Retention, select_expired

NOW = datetime(2026, 11, 26, 2, 0, tzinfo=UTC)
DAY = 86_400_000


def _meta(ages_days: list[float], refs: dict[str, tuple[int, SnapshotRefType, dict[str, int]]] | None = None,
          ) -> TableMetadata:
    """A linear history, oldest first, ids 1..N; `main` at the last one unless refs say otherwise."""
    base = new_table_metadata(Schema(NestedField(1, "x", LongType())), UNPARTITIONED_PARTITION_SPEC,
                              UNSORTED_SORT_ORDER, "file:///t", {})
    snaps = [Snapshot(snapshot_id=i + 1, parent_snapshot_id=i or None, sequence_number=i + 1,
                      timestamp_ms=to_millis(NOW) - int(age * DAY), manifest_list=f"file:///t/m{i}.avro",
                      summary=Summary(Operation.APPEND), schema_id=0) for i, age in enumerate(ages_days)]
    all_refs = {"main": SnapshotRef(snapshot_id=len(snaps), type=SnapshotRefType.BRANCH)}
    for name, (sid, kind, extra) in (refs or {}).items():
        all_refs[name] = SnapshotRef(snapshot_id=sid, type=kind, **extra)
    return base.model_copy(update={"snapshots": snaps, "refs": all_refs, "current_snapshot_id": len(snaps)})


def _ids(meta: TableMetadata, **kw: object) -> list[int]:
    retention = Retention(int(kw.pop("days", 30)), int(kw.pop("keep", 1)))  # type: ignore[call-overload]
    return sorted(select_expired(meta, NOW, retention, **kw).expire_ids)  # type: ignore[arg-type]


def test_expires_exactly_the_snapshots_older_than_the_window() -> None:
    meta = _meta([60, 45, 31, 29, 10, 1])
    assert _ids(meta) == [1, 2, 3]


def test_min_snapshots_to_keep_retains_the_newest_ancestors_even_when_old() -> None:
    meta = _meta([60, 50, 40, 35])
    assert _ids(meta, keep=1) == [1, 2, 3]
    assert _ids(meta, keep=3) == [1]
    assert _ids(meta, keep=10) == []


def test_current_snapshot_is_never_expired_even_with_zero_retention() -> None:
    meta = _meta([5, 4, 3])
    assert _ids(meta, days=0) == [1, 2]


def test_tag_heads_are_retained_but_not_their_ancestors() -> None:
    meta = _meta([60, 50, 40, 1], refs={"audit": (2, SnapshotRefType.TAG, {})})
    assert _ids(meta) == [1, 3]


def test_branch_heads_and_their_own_min_snapshots_to_keep() -> None:
    # main: 1..5; branch "dev" at 3 keeps its head and one ancestor by its own minimum.
    meta = _meta([60, 55, 50, 45, 1], refs={"dev": (3, SnapshotRefType.BRANCH, {"min-snapshots-to-keep": 2})})
    assert _ids(meta) == [1, 4]


def test_branch_max_snapshot_age_overrides_the_table_window() -> None:
    meta = _meta([60, 50, 40, 1], refs={"long": (3, SnapshotRefType.BRANCH, {"max-snapshot-age-ms": 100 * DAY})})
    assert _ids(meta) == []


def test_ref_past_its_max_ref_age_is_removed_and_its_snapshot_expires() -> None:
    meta = _meta([60, 50, 1], refs={"old": (1, SnapshotRefType.TAG, {"max-ref-age-ms": 7 * DAY}),
                                    "fresh": (2, SnapshotRefType.TAG, {"max-ref-age-ms": 70 * DAY})})
    sel = select_expired(meta, NOW, Retention(30, 1))
    assert sel.expired_refs == ("old",)
    assert sorted(sel.expire_ids) == [1]


def test_main_never_expires_by_max_ref_age() -> None:
    meta = _meta([60, 50])
    meta = meta.model_copy(update={"refs": {"main": SnapshotRef(snapshot_id=2, type=SnapshotRefType.BRANCH,
                                                                max_ref_age_ms=DAY)}})
    sel = select_expired(meta, NOW, Retention(30, 1))
    assert sel.expired_refs == () and list(sel.expire_ids) == [1]


def test_snapshots_pinned_by_in_flight_plans_are_retained() -> None:
    meta = _meta([60, 50, 40, 1])
    assert _ids(meta, pinned=[2, 999]) == [1, 3]


def test_unreferenced_snapshots_age_out_by_the_table_window() -> None:
    meta = _meta([60, 50, 20, 1])
    # Detach 3 from main's ancestry: 4's parent becomes 2, leaving 3 (20 days old) on no ref.
    snaps = list(meta.snapshots)
    snaps[3] = snaps[3].model_copy(update={"parent_snapshot_id": 2})
    meta = meta.model_copy(update={"snapshots": snaps})
    assert _ids(meta) == [1, 2]
    assert _ids(meta, days=10) == [1, 2, 3]


@pytest.mark.parametrize(("days", "keep"), [(-1, 1), (30, 0)])
def test_invalid_retention_is_refused(days: int, keep: int) -> None:
    with pytest.raises(ConfigError):
        Retention(days, keep)


def test_selection_is_oldest_first_and_independent_of_age_spacing() -> None:
    meta = _meta([float(90 - i) for i in range(80)])
    sel = select_expired(meta, NOW - timedelta(0), Retention(30, 1))
    assert list(sel.expire_ids) == list(range(1, 61))
