"""The lineage contract without services: field checks, the structured error, the writer helper."""

from __future__ import annotations

import json

import pytest
from pyiceberg.exceptions import ValidationException
from pyiceberg.table.snapshots import Operation, Summary

from lifecycle.errors import LifecycleError
from lifecycle.identity import fleet_properties
from lifecycle.lineage import REQUIRED_FIELDS, LineageValidationError, lineage_properties, validate_summary

FULL = {"operation": "append", "writer.id": "ingest-1", "writer.commit_hash": "ingest 1.2+abc",
        "writer.invocation_id": "run-42"}


def test_required_fields_are_the_contract() -> None:
    assert REQUIRED_FIELDS == ("operation", "writer.id", "writer.commit_hash", "writer.invocation_id")


@pytest.mark.parametrize("field", REQUIRED_FIELDS)
def test_each_missing_field_is_named(field: str) -> None:
    summary = {k: v for k, v in FULL.items() if k != field}
    with pytest.raises(LineageValidationError) as info:
        validate_summary(summary, "archive.t")
    err = info.value
    assert err.missing == [field]
    assert err.table == "archive.t"
    assert field in str(err)
    assert err.operation == (None if field == "operation" else "append")
    assert json.loads(json.dumps(err.to_dict()))["missing"] == [field]


def test_blank_values_count_as_missing_and_all_are_listed() -> None:
    with pytest.raises(LineageValidationError) as info:
        validate_summary({"operation": "append", "writer.id": "  "}, "archive.t")
    assert info.value.missing == ["writer.id", "writer.commit_hash", "writer.invocation_id"]


def test_pyiceberg_summary_with_all_fields_passes() -> None:
    validate_summary(Summary(Operation.APPEND, **lineage_properties("w", "h", "i")), "archive.t")
    validate_summary(FULL, "archive.t")


def test_no_summary_misses_everything() -> None:
    with pytest.raises(LineageValidationError) as info:
        validate_summary(None, "archive.t")
    assert info.value.missing == list(REQUIRED_FIELDS)


def test_error_is_not_retried_by_pyiceberg_and_maps_to_exit_1() -> None:
    err = LineageValidationError("archive.t", ["writer.id"], "append")
    assert isinstance(err, ValidationException)
    assert isinstance(err, LifecycleError) and err.exit_code == 1


def test_writer_helper_and_fleet_properties_satisfy_the_gate() -> None:
    props = lineage_properties("ingest-1", "ingest 1.2+abc")
    assert props["writer.invocation_id"]
    validate_summary({"operation": "append", **props}, "archive.t")
    validate_summary({"operation": "replace", **fleet_properties("plan-1", "rewrite-manifests")}, "archive.t")
    with pytest.raises(ValueError, match=r"writer\.id"):
        lineage_properties("", "h")
