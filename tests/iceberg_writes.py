"""Writes PyIceberg 0.12 cannot make on its own, as another engine (Spark, Flink) makes them: a row-level
position delete committed against a data file, an equality delete committed in a partition (merge-on-read).
Test helper only."""

from __future__ import annotations

import random
import uuid
from collections.abc import Mapping, Sequence
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
from pyiceberg.io.pyarrow import schema_to_pyarrow
from pyiceberg.manifest import (
    DataFile,
    DataFileContent,
    FileFormat,
    ManifestEntry,
    ManifestEntryStatus,
    write_manifest_list,
)
from pyiceberg.schema import Schema
from pyiceberg.table.refs import MAIN_BRANCH
from pyiceberg.table.snapshots import Operation, Snapshot, Summary
from pyiceberg.table.update import AddSnapshotUpdate, AssertRefSnapshotId, SetSnapshotRefUpdate

from lifecycle.compaction.mor_commit import DeleteManifestWriter  # delete manifests as Iceberg Java writes them

FILE_PATH_ID, POS_ID = 2147483546, 2147483545


def commit_position_delete(table: Any, data_file: DataFile, positions: Sequence[int],
                           properties: Mapping[str, str]) -> int:
    """Commit one position-delete file removing `positions` of `data_file`; returns the new snapshot id."""
    return commit_position_deletes(table, [(data_file, positions)], properties)


def commit_position_deletes(table: Any, targets: Sequence[tuple[DataFile, Sequence[int]]],
                            properties: Mapping[str, str]) -> int:
    """Commit one position-delete file removing rows of one or more data files of one partition (several: a
    partition-scoped delete, as writers with `write.delete.granularity=partition` make them, its `file_path`
    bounds spanning the files it names); returns the new snapshot id."""
    table = table.refresh()
    first = targets[0][0]
    folder = first.file_path.rsplit("/", 1)[0]
    path = f"{folder}/pos-delete-{uuid.uuid4().hex[:12]}.parquet"
    schema = pa.schema([pa.field("file_path", pa.string(), nullable=False,
                                 metadata={b"PARQUET:field_id": str(FILE_PATH_ID).encode()}),
                        pa.field("pos", pa.int64(), nullable=False,
                                 metadata={b"PARQUET:field_id": str(POS_ID).encode()})])
    pairs = sorted((df.file_path, p) for df, positions in targets for p in positions)
    rows = pa.table([pa.array([f for f, _ in pairs]), pa.array([p for _, p in pairs], pa.int64())], schema=schema)
    with table.io.new_output(path).create(overwrite=True) as out:
        pq.write_table(rows, out)
    delete = DataFile.from_args(
        content=DataFileContent.POSITION_DELETES, file_path=path, file_format=FileFormat.PARQUET,
        partition=first.partition, record_count=len(pairs), file_size_in_bytes=len(table.io.new_input(path)),
        lower_bounds={FILE_PATH_ID: pairs[0][0].encode()}, upper_bounds={FILE_PATH_ID: pairs[-1][0].encode()},
    )
    delete.spec_id = first.spec_id
    return _commit_delete(table, delete, {"added-delete-files": "1", "added-position-delete-files": "1",
                                          "added-position-deletes": str(len(pairs)), **properties})


def commit_equality_delete(table: Any, data_file: DataFile, rows: pa.Table, properties: Mapping[str, str]) -> int:
    """Commit one equality-delete file in `data_file`'s partition (as Flink's upserts write them): every row
    whose values of `rows`' columns equal one of `rows` (null equal to null) is deleted from the data files of
    that partition committed before it. Returns the new snapshot id."""
    table = table.refresh()
    schema = table.schema()
    fields = [schema.find_field(name) for name in rows.column_names]
    rows = rows.cast(schema_to_pyarrow(Schema(*fields)))
    folder = data_file.file_path.rsplit("/", 1)[0]
    path = f"{folder}/eq-delete-{uuid.uuid4().hex[:12]}.parquet"
    with table.io.new_output(path).create(overwrite=True) as out:
        pq.write_table(rows, out)
    delete = DataFile.from_args(
        content=DataFileContent.EQUALITY_DELETES, file_path=path, file_format=FileFormat.PARQUET,
        partition=data_file.partition, record_count=rows.num_rows, file_size_in_bytes=len(table.io.new_input(path)),
        equality_ids=[f.field_id for f in fields],
    )
    delete.spec_id = data_file.spec_id
    return _commit_delete(table, delete, {"added-delete-files": "1", "added-equality-delete-files": "1",
                                          "added-equality-deletes": str(rows.num_rows), **properties})


def _commit_delete(table: Any, delete: DataFile, summary_props: Mapping[str, str]) -> int:
    """One `delete` snapshot on main adding `delete` in a delete manifest of its own."""
    meta = table.metadata
    base = meta.current_snapshot()
    snapshot_id = random.SystemRandom().randrange(1, 2**62)
    seq = meta.last_sequence_number + 1
    spec = meta.specs()[delete.spec_id]
    manifest_path = f"{table.location().rstrip('/')}/metadata/{uuid.uuid4()}-delete-m0.avro"
    with DeleteManifestWriter(spec, meta.schema(), table.io.new_output(manifest_path), snapshot_id,
                               "deflate") as writer:
        writer.add_entry(ManifestEntry.from_args(status=ManifestEntryStatus.ADDED, snapshot_id=snapshot_id,
                                                 data_file=delete))
    manifests = [writer.to_manifest_file(), *base.manifests(table.io)]
    list_path = f"{table.location().rstrip('/')}/metadata/snap-{snapshot_id}-0-{uuid.uuid4()}.avro"
    with write_manifest_list(format_version=2, output_file=table.io.new_output(list_path), snapshot_id=snapshot_id,
                             parent_snapshot_id=base.snapshot_id, sequence_number=seq,
                             avro_compression="deflate") as lw:
        lw.add_manifests(manifests)
    summary = Summary(Operation.DELETE, **_totals(base, summary_props))
    snap = Snapshot(snapshot_id=snapshot_id, parent_snapshot_id=base.snapshot_id, sequence_number=seq,
                    timestamp_ms=meta.last_updated_ms + 1, manifest_list=list_path, summary=summary,
                    schema_id=meta.current_schema_id)
    table.catalog.commit_table(
        table, (AssertRefSnapshotId(ref=MAIN_BRANCH, snapshot_id=base.snapshot_id),),
        (AddSnapshotUpdate(snapshot=snap),
         SetSnapshotRefUpdate(ref_name=MAIN_BRANCH, type="branch", snapshot_id=snapshot_id)))
    return snapshot_id


def _totals(base: Snapshot, props: Mapping[str, str]) -> dict[str, str]:
    """The summary with the running totals a writer keeps (total-delete-files, total-*-deletes)."""
    parent = base.summary.additional_properties if base.summary is not None else {}
    out = dict(props)
    for total, added in (("total-delete-files", "added-delete-files"),
                         ("total-position-deletes", "added-position-deletes"),
                         ("total-equality-deletes", "added-equality-deletes")):
        if total in parent:
            out[total] = str(int(parent[total]) + int(props.get(added, 0)))
    for total in ("total-data-files", "total-records", "total-files-size"):
        if total in parent:
            out[total] = parent[total]
    return out
