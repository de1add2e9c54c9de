"""Partition strings `field=value[,field=value]`: parsed against a table's spec and formatted back.

Values are the transform's human string (identity: the value; year 2024; month 2024-03; day 2024-03-15;
hour 2024-03-15-10; bucket and truncate: the partition value). `,`, `=` and `%` in values are
percent-encoded when formatted.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any
from urllib.parse import quote, unquote

from pyiceberg.expressions import (
    AlwaysTrue,
    And,
    BooleanExpression,
    EqualTo,
    GreaterThanOrEqual,
    IsNull,
    LessThan,
    StartsWith,
)
from pyiceberg.partitioning import PartitionSpec
from pyiceberg.schema import Schema
from pyiceberg.transforms import (
    BucketTransform,
    DayTransform,
    HourTransform,
    IdentityTransform,
    MonthTransform,
    Transform,
    TruncateTransform,
    VoidTransform,
    YearTransform,
)
from pyiceberg.typedef import Record
from pyiceberg.types import (
    BooleanType,
    DateType,
    IcebergType,
    IntegerType,
    LongType,
    StringType,
    TimestampType,
    TimestamptzType,
)

from lifecycle.errors import PartitionError

EPOCH = date(1970, 1, 1)
EPOCH_DT = datetime(1970, 1, 1, tzinfo=UTC)


def values_of(record: Record | tuple[Any, ...] | None) -> tuple[Any, ...]:
    """A partition record's values as a tuple (a PyIceberg Record is indexable, not typed as iterable)."""
    if record is None:
        return ()
    if isinstance(record, tuple):
        return record
    return tuple(record[i] for i in range(len(record)))


# PyIceberg's predicates take (term, literal) in their own __init__; the pydantic plugin types them by their
# model fields instead, so each is built in one place with the one justified ignore.
def _eq(column: str, value: Any) -> BooleanExpression:
    return EqualTo(column, value)  # type: ignore[call-arg]  # PyIceberg's __init__(term, literal)


def _ge(column: str, value: Any) -> BooleanExpression:
    return GreaterThanOrEqual(column, value)  # type: ignore[call-arg]  # PyIceberg's __init__(term, literal)


def _lt(column: str, value: Any) -> BooleanExpression:
    return LessThan(column, value)  # type: ignore[call-arg]  # PyIceberg's __init__(term, literal)


def _starts(column: str, value: Any) -> BooleanExpression:
    return StartsWith(column, value)  # type: ignore[call-arg]  # PyIceberg's __init__(term, literal)


def _is_null(column: str) -> BooleanExpression:
    return IsNull(column)  # type: ignore[call-arg,misc]  # PyIceberg's __init__(term)


@dataclass(frozen=True)
class PartitionKey:
    """One partition of one spec: its internal values (as stored in manifests) and its text."""

    spec_id: int
    values: tuple[Any, ...]
    text: str

    def record(self) -> Record:
        return Record(*self.values)

    def matches(self, spec_id: int, partition: Record) -> bool:
        return spec_id == self.spec_id and values_of(partition) == self.values


def _quote(value: str) -> str:
    return quote(value, safe="/:+ ")


def _human(transform: Transform[Any, Any], source_type: IcebergType, value: Any) -> str:
    if value is None:
        return "null"
    return _quote(str(transform.to_human_string(source_type, value)))


def format_partition(spec: PartitionSpec, schema: Schema, values: Record | tuple[Any, ...]) -> str:
    parts = []
    for pf, value in zip(spec.fields, values_of(values), strict=True):
        source_type = schema.find_field(pf.source_id).field_type
        parts.append(f"{pf.name}={_human(pf.transform, source_type, value)}")
    return ",".join(parts)


def _fail(text: str, why: str) -> PartitionError:
    return PartitionError(f"partition {text!r}: {why}")


def _parse_identity(source_type: IcebergType, raw: str, text: str) -> Any:
    try:
        if isinstance(source_type, StringType):
            return raw
        if isinstance(source_type, IntegerType | LongType):
            return int(raw)
        if isinstance(source_type, DateType):
            return (date.fromisoformat(raw) - EPOCH).days
        if isinstance(source_type, BooleanType):
            if raw not in ("true", "false"):
                raise ValueError(raw)
            return raw == "true"
        if isinstance(source_type, TimestampType | TimestamptzType):
            when = datetime.fromisoformat(raw)
            if when.tzinfo is None:
                when = when.replace(tzinfo=UTC)
            return (when - EPOCH_DT) // timedelta(microseconds=1)
    except ValueError:
        raise _fail(text, f"{raw!r} is not a valid {source_type}") from None
    raise _fail(text, f"identity partitions on {source_type} are not supported")


_HUMAN = {
    YearTransform: (re.compile(r"^(\d{4})$"), "YYYY"),
    MonthTransform: (re.compile(r"^(\d{4})-(\d{2})$"), "YYYY-MM"),
    DayTransform: (re.compile(r"^(\d{4})-(\d{2})-(\d{2})$"), "YYYY-MM-DD"),
    HourTransform: (re.compile(r"^(\d{4})-(\d{2})-(\d{2})-(\d{2})$"), "YYYY-MM-DD-HH"),
}


def _parse_value(transform: Transform[Any, Any], source_type: IcebergType, raw: str, text: str, name: str) -> Any:
    if raw == "null":
        return None
    if isinstance(transform, IdentityTransform):
        return _parse_identity(source_type, raw, text)
    if isinstance(transform, BucketTransform):
        if not raw.isdigit() or int(raw) >= transform.num_buckets:
            raise _fail(text, f"{name}: bucket must be 0..{transform.num_buckets - 1}, got {raw!r}")
        return int(raw)
    if isinstance(transform, TruncateTransform):
        return _parse_identity(source_type, raw, text)
    if isinstance(transform, VoidTransform):
        raise _fail(text, f"{name}: a void partition field holds only null")
    for cls, (pattern, shape) in _HUMAN.items():
        if isinstance(transform, cls):
            m = pattern.match(raw)
            if not m:
                raise _fail(text, f"{name}: expected {shape}, got {raw!r}")
            nums = [int(g) for g in m.groups()]
            try:
                if cls is YearTransform:
                    return nums[0] - 1970
                if cls is MonthTransform:
                    if not 1 <= nums[1] <= 12:
                        raise ValueError
                    return (nums[0] - 1970) * 12 + nums[1] - 1
                day = date(nums[0], nums[1], nums[2])
                days = (day - EPOCH).days
                if cls is DayTransform:
                    return days
                if not 0 <= nums[3] <= 23:
                    raise ValueError
                return days * 24 + nums[3]
            except ValueError:
                raise _fail(text, f"{name}: {raw!r} is not a valid {shape}") from None
    raise _fail(text, f"{name}: transform {transform} is not supported")


def parse_partition(text: str, spec: PartitionSpec, schema: Schema) -> PartitionKey:
    """Parse against the spec: every spec field exactly once, in any order."""
    if not spec.fields:
        raise _fail(text, "the table is not partitioned")
    given: dict[str, str] = {}
    for chunk in text.split(","):
        if "=" not in chunk:
            raise _fail(text, f"expected field=value, got {chunk!r}")
        name, raw = chunk.split("=", 1)
        name = name.strip()
        if not name:
            raise _fail(text, "empty field name")
        if name in given:
            raise _fail(text, f"field {name!r} given twice")
        if "=" in raw:
            raise _fail(text, f"value of {name!r} contains '=' (separate fields with ',')")
        given[name] = unquote(raw)
    known = [pf.name for pf in spec.fields]
    unknown = [n for n in given if n not in known]
    if unknown:
        raise _fail(text, f"unknown partition field {unknown[0]!r}; the spec has {', '.join(known)}")
    missing = [n for n in known if n not in given]
    if missing:
        raise _fail(text, f"missing partition field(s) {', '.join(missing)}")
    values = []
    for pf in spec.fields:
        source_type = schema.find_field(pf.source_id).field_type
        values.append(_parse_value(pf.transform, source_type, given[pf.name], text, pf.name))
    return PartitionKey(spec.spec_id, tuple(values), format_partition(spec, schema, tuple(values)))


def _ts_literal(source_type: IcebergType, when: datetime) -> str:
    if isinstance(source_type, TimestamptzType):
        return when.isoformat()
    return when.replace(tzinfo=None).isoformat()


def _range(column: str, source_type: IcebergType, lo: datetime, hi: datetime) -> BooleanExpression:
    if isinstance(source_type, DateType):
        return And(_ge(column, lo.date().isoformat()), _lt(column, hi.date().isoformat()))
    return And(_ge(column, _ts_literal(source_type, lo)),
               _lt(column, _ts_literal(source_type, hi)))


def _field_filter(
    transform: Transform[Any, Any], column: str, source_type: IcebergType, value: Any
) -> BooleanExpression:
    if value is None:
        return _is_null(column)
    if isinstance(transform, IdentityTransform):
        if isinstance(source_type, DateType):
            return _eq(column, (EPOCH + timedelta(days=value)).isoformat())
        if isinstance(source_type, TimestampType | TimestamptzType):
            return _eq(column, _ts_literal(source_type, EPOCH_DT + timedelta(microseconds=value)))
        return _eq(column, value)
    if isinstance(transform, YearTransform):
        return _range(column, source_type, datetime(1970 + value, 1, 1, tzinfo=UTC),
                      datetime(1971 + value, 1, 1, tzinfo=UTC))
    if isinstance(transform, MonthTransform):
        y, m = divmod(value, 12)
        ny, nm = divmod(value + 1, 12)
        return _range(column, source_type, datetime(1970 + y, m + 1, 1, tzinfo=UTC),
                      datetime(1970 + ny, nm + 1, 1, tzinfo=UTC))
    if isinstance(transform, DayTransform):
        lo = EPOCH_DT + timedelta(days=value)
        return _range(column, source_type, lo, lo + timedelta(days=1))
    if isinstance(transform, HourTransform):
        lo = EPOCH_DT + timedelta(hours=value)
        return _range(column, source_type, lo, lo + timedelta(hours=1))
    if isinstance(transform, TruncateTransform) and isinstance(source_type, StringType):
        return _starts(column, value)
    if isinstance(transform, TruncateTransform) and isinstance(source_type, IntegerType | LongType):
        return And(_ge(column, value), _lt(column, value + transform.width))
    return AlwaysTrue()  # bucket: no row predicate; callers match files by partition record


def row_filter(key: PartitionKey, spec: PartitionSpec, schema: Schema) -> BooleanExpression:
    """A row filter selecting the partition (used to prune planning; files are then matched exactly)."""
    expr: BooleanExpression = AlwaysTrue()
    for pf, value in zip(spec.fields, key.values, strict=True):
        field = schema.find_field(pf.source_id)
        part = _field_filter(pf.transform, field.name, field.field_type, value)
        expr = part if isinstance(expr, AlwaysTrue) else And(expr, part)
    return expr
