"""The lineage gate on a real catalog: refused commits leave the pointer, count, and clean their files."""

from __future__ import annotations

import random
import uuid
from datetime import date
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import REGISTRY
from pyiceberg.table.snapshots import Operation, Snapshot, Summary
from pyiceberg.table.update import AddSnapshotUpdate, AssertRefSnapshotId, SetSnapshotRefUpdate

from lifecycle.lineage import REQUIRED_FIELDS, LineageValidationError, guard_catalog, lineage_properties
from lifecycle_cli.synth import ArchiveSpec, build_archive, make_rows

IDENT = "archive.sda_observations"
DAY = date(2024, 3, 15)


def _failures() -> float:
    return REGISTRY.get_sample_value("lineage_validation_failures_total", {"table": IDENT}) or 0.0


def _parquet_files(table: Any) -> set[str]:
    return _files(table, "*.parquet")


def _files(table: Any, pattern: str) -> set[str]:
    root = Path(table.location().removeprefix("file://"))
    return {str(p) for p in root.rglob(pattern)}


@pytest.fixture
def archive(catalog: Any, clock: Any) -> Any:
    spec = ArchiveSpec(partitions=[("apollo-7", DAY)], files_per_partition=2, file_bytes=(2_000, 4_000))
    return build_archive(catalog, spec, clock)


def _rows(n: int = 5) -> Any:
    return make_rows(random.Random(1), "apollo-7", DAY, n)


@pytest.mark.parametrize("field", [f for f in REQUIRED_FIELDS if f != "operation"])
def test_append_missing_a_writer_field_is_refused(catalog: Any, archive: Any, field: str) -> None:
    guarded = guard_catalog(catalog, remove_refused_files=True)   # a writer that only adds files it wrote
    table = guarded.load_table(IDENT)
    before_location = catalog.load_table(IDENT).metadata_location
    before_files = _parquet_files(table)
    before_metadata = _files(table, "*.avro") | _files(table, "*.metadata.json")
    before_count = _failures()
    props = {k: v for k, v in lineage_properties("ingest-1", "ingest 1.0+abc").items() if k != field}

    with pytest.raises(LineageValidationError) as info:
        table.append(_rows(), snapshot_properties=props)

    assert info.value.missing == [field]
    assert info.value.table == IDENT
    assert info.value.operation == "append"
    assert catalog.load_table(IDENT).metadata_location == before_location
    assert _failures() == before_count + 1          # exactly once: PyIceberg did not retry
    assert _parquet_files(table) == before_files    # opted in: the refused commit's data file was removed
    # no metadata file written; PyIceberg removed the refused snapshot's manifest and manifest list
    assert _files(table, "*.avro") | _files(table, "*.metadata.json") == before_metadata
    assert catalog.load_table(IDENT).scan().to_arrow().num_rows == archive.rows


def test_snapshot_without_operation_is_refused(catalog: Any, archive: Any) -> None:
    guarded = guard_catalog(catalog)
    table = guarded.load_table(IDENT)
    meta = table.metadata
    before_location = table.metadata_location
    before_count = _failures()
    summary = Summary.model_construct()  # PyIceberg's Summary() would default the operation
    object.__setattr__(summary, "__pydantic_private__", {"_additional_properties": lineage_properties("w", "h")})
    snap = Snapshot(snapshot_id=random.randrange(1, 2**62), parent_snapshot_id=meta.current_snapshot_id,
                    sequence_number=meta.last_sequence_number + 1, timestamp_ms=meta.last_updated_ms + 1,
                    manifest_list=meta.current_snapshot().manifest_list, summary=summary,
                    schema_id=meta.current_schema_id)
    with pytest.raises(LineageValidationError) as info:
        guarded.commit_table(
            table, (AssertRefSnapshotId(ref="main", snapshot_id=meta.current_snapshot_id),),
            (AddSnapshotUpdate(snapshot=snap),
             SetSnapshotRefUpdate(ref_name="main", type="branch", snapshot_id=snap.snapshot_id)))
    assert info.value.missing == ["operation"]
    assert catalog.load_table(IDENT).metadata_location == before_location
    assert _failures() == before_count + 1
    # the table's own data files are untouched: the refused snapshot added none
    assert catalog.load_table(IDENT).scan().to_arrow().num_rows == archive.rows


def test_commit_with_all_four_passes(catalog: Any, archive: Any) -> None:
    guarded = guard_catalog(catalog)
    table = guarded.load_table(IDENT)
    before_count = _failures()
    props = lineage_properties("ingest-1", "ingest 1.0+abc", f"run-{uuid.uuid4().hex[:6]}")
    table.append(_rows(7), snapshot_properties=props)
    fresh = catalog.load_table(IDENT)
    summary = fresh.current_snapshot().summary
    assert summary.operation == Operation.APPEND
    assert {k: summary[k] for k in props} == props
    assert fresh.scan().to_arrow().num_rows == archive.rows + 7
    assert _failures() == before_count


def test_refused_files_stay_by_default(catalog: Any, archive: Any) -> None:
    table = guard_catalog(catalog).load_table(IDENT)
    before_files = _parquet_files(table)
    with pytest.raises(LineageValidationError):
        table.append(_rows(), snapshot_properties={"writer.id": "ingest-1"})
    left = _parquet_files(table) - before_files
    assert len(left) == 1                          # left for the orphan job
    assert catalog.load_table(IDENT).scan().to_arrow().num_rows == archive.rows


def test_refused_add_files_never_deletes_the_writers_own_files(catalog: Any, archive: Any) -> None:
    """A writer registers files it already owns (add_files) and forgets one lineage field: the gate refuses
    the commit and, by default, deletes nothing (it did not create those files)."""
    import pyarrow.parquet as pq
    from pyiceberg.io.pyarrow import schema_to_pyarrow

    table = guard_catalog(catalog).load_table(IDENT)
    root = Path(table.location().removeprefix("file://"))
    mine = root / "data" / "writer-owned" / "existing.parquet"
    mine.parent.mkdir(parents=True)
    pq.write_table(_rows(4).cast(schema_to_pyarrow(table.schema())), mine)
    props = {k: v for k, v in lineage_properties("ingest-1", "ingest 1.0+abc").items() if k != "writer.commit_hash"}
    with pytest.raises(LineageValidationError):
        table.add_files([f"file://{mine}"], snapshot_properties=props)
    assert mine.exists()                              # the writer's own file survives the refusal
    assert catalog.load_table(IDENT).scan().to_arrow().num_rows == archive.rows


def test_guard_is_idempotent_and_keeps_the_catalog_class(catalog: Any) -> None:
    guarded = guard_catalog(catalog)
    assert guard_catalog(guarded) is guarded
    assert isinstance(guarded, type(catalog))


def test_documented_writer_snippet_commits_with_lineage(catalog: Any, archive: Any) -> None:
    doc = (Path(__file__).resolve().parents[2] / "docs" / "lineage.md").read_text()
    snippet = doc.split("```python\n", 1)[1].split("```", 1)[0]
    assert 'load_catalog("archive")' in snippet
    exec(snippet.replace('load_catalog("archive")', "test_catalog"), {"test_catalog": catalog, "rows": _rows(3)})
    summary = catalog.load_table(IDENT).current_snapshot().summary
    assert summary["writer.id"] == "ingest@host-7"
    assert summary["writer.invocation_id"] == "run-2024-03-15T10:00Z"
