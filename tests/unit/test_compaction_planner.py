"""The compaction planner and strategy selection: pure functions, no IO."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pyiceberg.schema import Schema
from pyiceberg.table.sorting import NullOrder, SortDirection, SortField, SortOrder
from pyiceberg.transforms import IdentityTransform
from pyiceberg.types import LongType, NestedField, StringType

from lifecycle.compaction.planner import (
    BINPACK,
    SORT,
    ZORDER,
    FileGroup,
    FileInfo,
    Strategy,
    Thresholds,
    output_count,
    plan_partition,
    plan_table,
)
from lifecycle.compaction.strategy import select_strategy, thresholds_for
from lifecycle.errors import ConfigError
from lifecycle.settings import TableSettings

MB = 1_000_000
BIN = Strategy(BINPACK)
TH = Thresholds(small_file_bytes=32 * MB, min_small_files=5, target_file_bytes=128 * MB, max_group_bytes=10**12)
SCHEMA = Schema(NestedField(1, "payload_id", LongType(), required=False),
                NestedField(2, "sensor_kind", StringType(), required=False))


def files(sizes: list[int]) -> list[FileInfo]:
    return [FileInfo(f"f{i:03d}.parquet", s, max(1, s // 100)) for i, s in enumerate(sizes)]


def test_candidate_from_min_small_files_and_big_files_left_alone() -> None:
    assert plan_partition("p", files([MB] * 4 + [200 * MB] * 3), BIN, TH) is None
    plan = plan_partition("p", files([MB] * 5 + [40 * MB, 200 * MB]), BIN, TH)
    assert plan is not None
    (group,) = plan.groups
    assert {f.size for f in group.inputs} == {MB} and len(group.inputs) == 5
    assert group.output_count == 1 and plan.total_files == 7


def test_output_count_is_ceil_of_group_bytes_over_target() -> None:
    sizes = [7 * MB, 9 * MB, 3 * MB, 10 * MB, 8 * MB] * 10   # 370 MB
    plan = plan_partition("p", files(sizes), BIN, TH)
    assert plan is not None
    assert sum(g.output_count for g in plan.groups) == math.ceil(370 * MB / (128 * MB)) == 3


def test_groups_are_bounded_and_cover_every_small_file_once() -> None:
    th = Thresholds(32 * MB, 5, 10 * MB, max_group_bytes=25 * MB)
    sizes = [3 * MB + i for i in range(30)]
    plan = plan_partition("p", files(sizes), BIN, th)
    assert plan is not None
    assert all(g.input_bytes <= 25 * MB + 32 * MB for g in plan.groups)
    assert all(g.input_bytes <= 25 * MB for g in plan.groups[:-1])
    assert sorted(f.path for g in plan.groups for f in g.inputs) == sorted(f.path for f in files(sizes))
    assert all(g.output_count == math.ceil(g.input_bytes / (10 * MB)) for g in plan.groups)


@given(st.lists(st.integers(min_value=1, max_value=40 * MB), min_size=0, max_size=80),
       st.integers(min_value=MB, max_value=64 * MB))
def test_plan_properties(sizes: list[int], max_group: int) -> None:
    th = Thresholds(32 * MB, 5, 8 * MB, max_group)
    plan = plan_partition("p", files(sizes), BIN, th)
    small = [s for s in sizes if s < 32 * MB]
    if len(small) < 5:
        assert plan is None
        return
    if plan is None:
        return  # every chunk was a single file
    seen = [f.path for g in plan.groups for f in g.inputs]
    assert len(seen) == len(set(seen))
    for g in plan.groups:
        assert len(g.inputs) >= 2 and all(f.size < 32 * MB for f in g.inputs)
        # at most the bound (or one file alone over it) plus a lone trailing small file
        assert g.input_bytes <= max(max_group, *(f.size for f in g.inputs)) + 32 * MB
        assert g.output_count == output_count(g.input_bytes, g.records, 8 * MB)


def test_plan_round_trips_and_is_pinned() -> None:
    plan = plan_table("ns.t", 42, {"b=1": files([MB] * 6), "b=2": files([MB] * 2)}, BIN, TH)
    assert [p.partition for p in plan.partitions] == ["b=1"]
    d = plan.to_dict()
    assert d["snapshot_id"] == 42 and d["partitions"][0]["input_files"] == 6
    group = plan.partitions[0].groups[0]
    assert FileGroup.from_dict(group.to_dict()) == group
    s = Strategy(SORT, ("a", "b"), ("asc", "desc"), ("first", "last"), 3)
    assert Strategy.from_dict(s.to_dict()) == s


def test_output_count_never_exceeds_rows() -> None:
    assert output_count(10 * MB, 3, MB) == 3
    assert output_count(1, 1, MB) == 1


def test_strategy_zorder_property_wins_over_sort_order() -> None:
    order = SortOrder(SortField(source_id=1, transform=IdentityTransform(), direction=SortDirection.DESC,
                                null_order=NullOrder.NULLS_FIRST), order_id=1)
    z = select_strategy({"lifecycle.zorder-columns": "sensor_kind, payload_id"}, order, SCHEMA)
    assert z == Strategy(ZORDER, ("sensor_kind", "payload_id"))
    s = select_strategy({}, order, SCHEMA)
    assert s == Strategy(SORT, ("payload_id",), ("desc",), ("first",), 1)
    assert select_strategy({}, SortOrder(order_id=0), SCHEMA) == BIN
    assert select_strategy({}, None, SCHEMA) == BIN
    with pytest.raises(ConfigError, match="nope"):
        select_strategy({"lifecycle.zorder-columns": "nope"}, None, SCHEMA)


def test_thresholds_from_settings_and_properties() -> None:
    ts = TableSettings(small_file_bytes=100, min_small_files=3, target_file_bytes=1000)
    th = thresholds_for(ts, {}, BIN)
    assert (th.small_file_bytes, th.min_small_files, th.target_file_bytes) == (100, 3, 1000)
    assert thresholds_for(ts, {"lifecycle.compaction.max-group-bytes": "5000"}, BIN).max_group_bytes == 5000
    big = TableSettings(target_file_bytes=128 << 20)
    # sort and Z-order are bounded by the memory budget, not by the group: groups sized as bin-pack's
    assert thresholds_for(big, {}, Strategy(ZORDER, ("a",))).max_group_bytes == 64 * (128 << 20)
    with pytest.raises(ConfigError):
        thresholds_for(ts, {"lifecycle.compaction.max-group-bytes": "lots"}, BIN)
