"""Hidden paths are never orphans, as in Apache Iceberg's own orphan scan: a segment below the table location
starting with `.` or `_`, except the `<field>=` folders of a partition field so named."""

from __future__ import annotations

import pytest

from lifecycle.orphans.classify import (
    CANDIDATE,
    HIDDEN,
    LIVE,
    OUTSIDE,
    classify,
    classify_all,
    hidden_partition_prefixes,
)
from lifecycle.orphans.listing import ListedFile
from lifecycle.safety.paths import LiveIndex, Schemes, location_prefix
from tests.unit.test_orphan_classify import LOC, f, guards


@pytest.mark.parametrize(("rel", "label"), [
    ("data/.part-00000.parquet.crc", HIDDEN),          # Hadoop checksum sidecar beside a data file
    ("metadata/.v2.metadata.json.crc", HIDDEN),
    ("data/_SUCCESS", HIDDEN),
    ("_temporary/0/task/part-0.parquet", HIDDEN),        # a hidden folder hides everything under it
    ("data/mission=a/.staging/x.parquet", HIDDEN),
    ("data/_bucket=3/x.parquet", HIDDEN),                # `_bucket` is not a partition field of this table
    ("data/a_b/x.parquet", CANDIDATE),                   # `_` or `.` inside a name is not hidden
    ("data/x.parquet.", CANDIDATE),
    ("data/mission=a/x.parquet", CANDIDATE),
    ("data/orphan.parquet", CANDIDATE),
])
def test_hidden_segments_are_kept(rel: str, label: str) -> None:
    assert classify(f(rel), guards()) == label


def test_partition_folders_of_a_field_named_with_a_leading_underscore_are_not_hidden() -> None:
    prefixes = hidden_partition_prefixes(["mission", "_src", ".day", "ts_day"])
    assert prefixes == (".day=", "_src=")
    g = guards(hidden_partitions=prefixes)
    assert classify(f("data/_src=radar/x.parquet"), g) == CANDIDATE
    assert classify(f("data/_src=radar/.day=2024-01-01/x.parquet"), g) == CANDIDATE
    assert classify(f("data/_src=radar/.x.parquet.crc"), g) == HIDDEN  # the sidecar is still hidden
    assert classify(f("data/_src/x.parquet"), g) == HIDDEN               # not `<field>=`
    assert classify(f("data/_other=1/x.parquet"), g) == HIDDEN


def test_only_segments_below_the_location_count() -> None:
    loc = "file:///wh/_archive/.t"
    g = guards(location=location_prefix(loc), live=LiveIndex([], Schemes()))
    assert classify(ListedFile(f"{loc}/data/x.parquet", 1, 0.0), g) == CANDIDATE
    assert classify(ListedFile(f"{loc}/data/.x.parquet.crc", 1, 0.0), g) == HIDDEN
    assert classify(ListedFile("file:///wh/_archive/other/x.parquet", 1, 0.0), g) == OUTSIDE


def test_a_live_file_is_live_even_under_a_hidden_name_and_hidden_files_are_counted() -> None:
    g = guards(live=LiveIndex([f"{LOC}/data/_odd/live.parquet"], Schemes()))
    files = [f("data/_odd/live.parquet"), f("data/.a.crc"), f("_SUCCESS"), f("data/orphan.parquet")]
    out = classify_all(files, g)
    assert out.counts[LIVE] == 1
    assert out.kept()[HIDDEN] == 2
    assert [c.path for c in out.candidates] == [f"{LOC}/data/orphan.parquet"]
