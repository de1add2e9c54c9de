"""Merge-on-read pieces that need no table: which files the planner takes for their deletes, which delete
files are dangling after a rewrite, equality deletes matched exactly (null equal to null) or refused."""

from __future__ import annotations

from typing import Any

import pyarrow as pa
import pytest
from pyiceberg.manifest import DataFile, DataFileContent, FileFormat, ManifestEntry, ManifestEntryStatus
from pyiceberg.schema import Schema
from pyiceberg.typedef import Record
from pyiceberg.types import DoubleType, LongType, NestedField, StringType, StructType

from lifecycle.compaction.mor_commit import removed_per_group
from lifecycle.compaction.mor_equality import EqualityKeys, max_rows, refusal
from lifecycle.compaction.mor_index import SnapshotFiles, dangling
from lifecycle.compaction.planner import BINPACK, FileGroup, FileInfo, Strategy, Thresholds, plan_partition
from lifecycle.compaction.scan import delete_thresholds
from lifecycle.errors import ConfigError

MB = 1_000_000
TH = Thresholds(small_file_bytes=32 * MB, min_small_files=5, target_file_bytes=128 * MB, max_group_bytes=10**12)
PATH_ID = 2147483546


def info(name: str, size: int, heavy: bool = False, deletes: tuple[str, ...] = ()) -> FileInfo:
    return FileInfo(name, size, size // 100, deletes, heavy)


def test_a_heavy_file_is_rewritten_alone_whatever_its_size_and_the_small_file_count() -> None:
    files = [info("a", 500 * MB, heavy=True, deletes=("d1",)), info("b", 400 * MB), info("c", 1 * MB)]
    plan = plan_partition("p", files, Strategy(BINPACK), TH)
    assert plan is not None
    assert [[f.path for f in g.inputs] for g in plan.groups] == [["a", "c"]]   # the small one joins it
    alone = plan_partition("p", files[:2], Strategy(BINPACK), TH)
    assert alone is not None and [g.paths() for g in alone.groups] == [["a"]]
    assert alone.groups[0].deletes == ["d1"] and alone.to_dict()["delete_files"] == 1
    assert plan_partition("p", [info("x", 1 * MB, deletes=("d",)), info("y", 1 * MB)], Strategy(BINPACK), TH) is None


def test_a_group_keeps_its_inputs_deletes_and_reads_plans_written_before_them() -> None:
    g = FileGroup((info("a", 10, deletes=("d2", "d1")), info("b", 10, deletes=("d1",)), info("c", 10)), 1)
    raw = g.to_dict()
    assert raw["delete_files"] == 2 and FileGroup.from_dict(raw) == FileGroup(
        (info("a", 10, deletes=("d2", "d1")), info("b", 10, deletes=("d1",)), info("c", 10)), 1)
    old = {"inputs": [["a", 10, 5], ["b", 20, 7]], "planned_outputs": 1}
    assert FileGroup.from_dict(old).inputs == (FileInfo("a", 10, 5), FileInfo("b", 20, 7))


@pytest.mark.parametrize("props, why", [
    ({"lifecycle.compaction.delete-file-threshold": "0"}, "delete-file-threshold"),
    ({"lifecycle.compaction.delete-file-threshold": "many"}, "delete-file-threshold"),
    ({"lifecycle.compaction.delete-ratio-threshold": "1.5"}, "delete-ratio-threshold"),
    ({"lifecycle.compaction.delete-ratio-threshold": "x"}, "delete-ratio-threshold"),
    ({"lifecycle.compaction.equality-delete-max-rows": "-1"}, "equality-delete-max-rows"),
])
def test_bad_delete_properties_name_the_property(props: dict[str, str], why: str) -> None:
    with pytest.raises(ConfigError, match=why):
        delete_thresholds(props)
        max_rows(props)


def test_delete_threshold_defaults() -> None:
    assert delete_thresholds({}) == (5, 0.3) and max_rows({}) == 1_000_000


def _file(path: str, content: DataFileContent = DataFileContent.DATA, partition: tuple[Any, ...] = ("m0",),
          spec_id: int = 0, bounds: str | None = None, eq: list[int] | None = None) -> DataFile:
    args: dict[str, Any] = dict(content=content, file_path=path, file_format=FileFormat.PARQUET,
                                partition=Record(*partition), record_count=3, file_size_in_bytes=10)
    if bounds is not None:
        args.update(lower_bounds={PATH_ID: bounds.encode()}, upper_bounds={PATH_ID: bounds.encode()})
    if eq is not None:
        args["equality_ids"] = eq
    df = DataFile.from_args(**args)
    df.spec_id = spec_id
    return df


def _entry(df: DataFile, seq: int) -> ManifestEntry:
    return ManifestEntry.from_args(status=ManifestEntryStatus.EXISTING, snapshot_id=1, sequence_number=seq,
                                   file_sequence_number=seq, data_file=df)


POS, EQ = DataFileContent.POSITION_DELETES, DataFileContent.EQUALITY_DELETES


def test_dangling_delete_files_follow_icebergs_rules() -> None:
    data = [_entry(_file("in1"), 1), _entry(_file("in2"), 1), _entry(_file("kept"), 3),
            _entry(_file("other", partition=("m1",)), 1)]
    deletes = {
        "file-scoped on an input": _entry(_file("d1", POS, bounds="in1"), 2),
        "file-scoped on a kept file": _entry(_file("d2", POS, bounds="kept"), 4),
        "partition-scoped, a kept file is older": _entry(_file("d3", POS), 4),
        "partition-scoped, every kept file newer": _entry(_file("d4", POS), 2),
        "equality, kept file older": _entry(_file("d5", EQ, eq=[1]), 4),
        "equality, kept file same sequence": _entry(_file("d6", EQ, eq=[1]), 3),
        "equality in another partition": _entry(_file("d7", EQ, partition=("m1",), eq=[1]), 2),
        "global equality, table not fully read": _entry(_file("d8", EQ, partition=(), spec_id=9, eq=[1]), 2),
    }
    files = SnapshotFiles(data, [(e, "m.avro") for e in deletes.values()])
    gone = {e.data_file.file_path for e, _ in dangling(files, {"in1", "in2"}, unpartitioned={9})}
    assert gone == {"d1", "d4", "d6"}
    files.whole_table = True
    assert {e.data_file.file_path for e, _ in dangling(files, {"in1", "in2", "other"}, unpartitioned={9})} == {
        "d1", "d4", "d6", "d7", "d8"}


def test_removed_delete_files_are_counted_against_the_group_they_applied_to() -> None:
    assert removed_per_group(["d1", "d2", "d9"], {"g2": ["d2"], "g1": ["d1", "d2"]}) == {"g1": 3, "g2": 0}
    assert removed_per_group([], {}) == {}


SCHEMA = Schema(NestedField(1, "id", LongType(), required=False), NestedField(2, "kind", StringType(), required=False),
                NestedField(3, "value", DoubleType(), required=False),
                NestedField(4, "nested", StructType(NestedField(5, "x", LongType(), required=False)), required=False))


@pytest.mark.parametrize("eq, fmt, rows, why", [
    ([1, 2], FileFormat.PARQUET, 3, None),
    ([3], FileFormat.PARQUET, 3, "floating point"),
    ([5], FileFormat.PARQUET, 3, "nested or no longer in the table schema"),
    ([42], FileFormat.PARQUET, 3, "nested or no longer in the table schema"),
    ([], FileFormat.PARQUET, 3, "names no equality columns"),
    ([1], FileFormat.AVRO, 3, "only Parquet"),
    ([1], FileFormat.PARQUET, 11, "equality-delete-max-rows=10"),
])
def test_equality_deletes_that_cannot_be_applied_exactly_are_refused_with_the_reason(
        eq: list[int], fmt: FileFormat, rows: int, why: str | None) -> None:
    d = DataFile.from_args(content=EQ, file_path="s3://b/t/data/eq-1.parquet", file_format=fmt,
                           partition=Record(), record_count=rows, file_size_in_bytes=10, equality_ids=eq)
    got = refusal(SCHEMA, [d], limit=10)
    assert got is None if why is None else why in (got or "")


def _keys(*tables: pa.Table) -> EqualityKeys:
    keys = EqualityKeys.__new__(EqualityKeys)
    keys.keys = list(tables)
    return keys


def test_equality_matching_treats_null_as_equal_to_null_on_one_or_several_columns() -> None:
    rows = pa.table({"id": pa.array([1, 2, None, 2, None], pa.int64()),
                     "kind": pa.array(["a", "b", "c", None, None])})
    one = _keys(pa.table({"id": pa.array([2, None], pa.int64())}))
    assert one.deleted(rows).to_pylist() == [False, True, True, True, True]
    two = _keys(pa.table({"id": pa.array([2, None, 1], pa.int64()), "kind": pa.array(["b", "c", None])}))
    assert two.deleted(rows).to_pylist() == [False, True, True, False, False]
    both_null = _keys(pa.table({"id": pa.array([None], pa.int64()), "kind": pa.array([None], pa.string())}))
    assert both_null.deleted(rows).to_pylist() == [False, False, False, False, True]
    assert _keys(one.keys[0], two.keys[0]).deleted(rows).to_pylist() == [False, True, True, True, True]
    assert _keys().deleted(rows) is None
