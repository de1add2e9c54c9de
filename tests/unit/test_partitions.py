from __future__ import annotations

from datetime import date

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pyiceberg.partitioning import PartitionField, PartitionSpec
from pyiceberg.schema import Schema
from pyiceberg.transforms import (
    BucketTransform,
    DayTransform,
    HourTransform,
    IdentityTransform,
    MonthTransform,
    TruncateTransform,
    YearTransform,
)
from pyiceberg.types import DateType, LongType, NestedField, StringType, TimestamptzType

from lifecycle.errors import PartitionError
from lifecycle.iceberg.partitions import format_partition, parse_partition, row_filter
from lifecycle_cli.synth import SCHEMA, SPEC

WIDE = Schema(
    NestedField(1, "mission_id", StringType()),
    NestedField(2, "ts", TimestamptzType()),
    NestedField(3, "payload_id", LongType()),
    NestedField(4, "d", DateType()),
)
WIDE_SPEC = PartitionSpec(
    PartitionField(1, 1000, IdentityTransform(), "mission_id"),
    PartitionField(2, 1001, YearTransform(), "year"),
    PartitionField(2, 1002, MonthTransform(), "month"),
    PartitionField(2, 1003, HourTransform(), "hour"),
    PartitionField(3, 1004, BucketTransform(16), "bucket"),
    PartitionField(1, 1005, TruncateTransform(3), "prefix"),
    PartitionField(4, 1006, DayTransform(), "day"),
)


def test_design_example_parses_to_internal_values() -> None:
    key = parse_partition("mission_id=apollo-7,day=2024-03-15", SPEC, SCHEMA)
    assert key.values == ("apollo-7", (date(2024, 3, 15) - date(1970, 1, 1)).days)
    assert key.text == "mission_id=apollo-7,day=2024-03-15"
    # order of fields in the string does not matter
    assert parse_partition("day=2024-03-15,mission_id=apollo-7", SPEC, SCHEMA) == key
    assert "mission_id" in repr(row_filter(key, SPEC, SCHEMA))


@given(
    mission=st.text(min_size=1, max_size=12),
    year=st.integers(-10, 130),
    month=st.integers(-100, 1500),
    hour=st.integers(0, 24 * 365 * 80),
    bucket=st.integers(0, 15),
    prefix=st.text(max_size=3),
    day=st.integers(-1000, 40000),
)
def test_partition_strings_round_trip(mission: str, year: int, month: int, hour: int, bucket: int,
                                      prefix: str, day: int) -> None:
    values = (mission, year, month, hour, bucket, prefix, day)
    text = format_partition(WIDE_SPEC, WIDE, values)
    key = parse_partition(text, WIDE_SPEC, WIDE)
    assert key.values == values
    assert key.text == text


@pytest.mark.parametrize(("text", "message"), [
    ("mission_id=apollo-7", "missing partition field(s) day"),
    ("mission_id=apollo-7,day=2024-03-15,sensor=x", "unknown partition field 'sensor'"),
    ("mission_id=apollo-7,day=15/03/2024", "day: expected YYYY-MM-DD"),
    ("mission_id=apollo-7,day=2024-02-30", "is not a valid YYYY-MM-DD"),
    ("mission_id=apollo-7;day=2024-03-15", "contains '='"),
    ("mission_id=apollo-7 day=2024-03-15", "contains '='"),
    ("mission_id=a,mission_id=b,day=2024-03-15", "given twice"),
    ("=x,day=2024-03-15", "empty field name"),
    ("", "expected field=value"),
])
def test_bad_partition_strings_are_refused_naming_the_problem(text: str, message: str) -> None:
    with pytest.raises(PartitionError) as err:
        parse_partition(text, SPEC, SCHEMA)
    assert message in str(err.value)


def test_bucket_out_of_range_is_refused() -> None:
    text = "mission_id=a,year=2024,month=2024-01,hour=2024-01-01-00,bucket=16,prefix=abc,day=2024-01-01"
    with pytest.raises(PartitionError, match=r"bucket must be 0\.\.15"):
        parse_partition(text, WIDE_SPEC, WIDE)
