"""Writes PyIceberg 0.12 cannot make on its own, as another engine (Spark, Flink) makes them: a row-level
position delete committed against a data file (merge-on-read). Test helper only."""

from __future__ import annotations

import random
import uuid
from collections.abc import Mapping, Sequence
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
from pyiceberg.manifest import (
    DataFile,
    DataFileContent,
    FileFormat,
    ManifestContent,
    ManifestEntry,
    ManifestEntryStatus,
    ManifestWriterV2,
    write_manifest_list,
)
from pyiceberg.table.refs import MAIN_BRANCH
from pyiceberg.table.snapshots import Operation, Snapshot, Summary
from pyiceberg.table.update import AddSnapshotUpdate, AssertRefSnapshotId, SetSnapshotRefUpdate

FILE_PATH_ID, POS_ID = 2147483546, 2147483545


class _DeleteManifestWriter(ManifestWriterV2):
    def content(self) -> ManifestContent:
        return ManifestContent.DELETES

    @property
    def _meta(self) -> dict[str, str]:
        return {**super()._meta, "content": "deletes"}


def commit_position_delete(table: Any, data_file: DataFile, positions: Sequence[int],
                           properties: Mapping[str, str]) -> int:
    """Commit one position-delete file removing `positions` of `data_file`; returns the new snapshot id."""
    table = table.refresh()
    meta = table.metadata
    base = meta.current_snapshot()
    folder = data_file.file_path.rsplit("/", 1)[0]
    path = f"{folder}/pos-delete-{uuid.uuid4().hex[:12]}.parquet"
    schema = pa.schema([pa.field("file_path", pa.string(), nullable=False,
                                 metadata={b"PARQUET:field_id": str(FILE_PATH_ID).encode()}),
                        pa.field("pos", pa.int64(), nullable=False,
                                 metadata={b"PARQUET:field_id": str(POS_ID).encode()})])
    rows = pa.table([pa.array([data_file.file_path] * len(positions)), pa.array(sorted(positions), pa.int64())],
                    schema=schema)
    with table.io.new_output(path).create(overwrite=True) as out:
        pq.write_table(rows, out)
    encoded = data_file.file_path.encode()
    delete = DataFile.from_args(
        content=DataFileContent.POSITION_DELETES, file_path=path, file_format=FileFormat.PARQUET,
        partition=data_file.partition, record_count=len(positions), file_size_in_bytes=len(table.io.new_input(path)),
        lower_bounds={FILE_PATH_ID: encoded}, upper_bounds={FILE_PATH_ID: encoded},
    )
    delete.spec_id = data_file.spec_id
    snapshot_id = random.SystemRandom().randrange(1, 2**62)
    seq = meta.last_sequence_number + 1
    spec = meta.specs()[data_file.spec_id]
    manifest_path = f"{table.location().rstrip('/')}/metadata/{uuid.uuid4()}-delete-m0.avro"
    with _DeleteManifestWriter(spec, meta.schema(), table.io.new_output(manifest_path), snapshot_id,
                               "deflate") as writer:
        writer.add_entry(ManifestEntry.from_args(status=ManifestEntryStatus.ADDED, snapshot_id=snapshot_id,
                                                 data_file=delete))
    manifests = [writer.to_manifest_file(), *base.manifests(table.io)]
    list_path = f"{table.location().rstrip('/')}/metadata/snap-{snapshot_id}-0-{uuid.uuid4()}.avro"
    with write_manifest_list(format_version=2, output_file=table.io.new_output(list_path), snapshot_id=snapshot_id,
                             parent_snapshot_id=base.snapshot_id, sequence_number=seq,
                             avro_compression="deflate") as lw:
        lw.add_manifests(manifests)
    summary = Summary(Operation.DELETE, **{"added-delete-files": "1", "added-position-deletes": str(len(positions)),
                                           **properties})
    snap = Snapshot(snapshot_id=snapshot_id, parent_snapshot_id=base.snapshot_id, sequence_number=seq,
                    timestamp_ms=meta.last_updated_ms + 1, manifest_list=list_path, summary=summary,
                    schema_id=meta.current_schema_id)
    table.catalog.commit_table(
        table, (AssertRefSnapshotId(ref=MAIN_BRANCH, snapshot_id=base.snapshot_id),),
        (AddSnapshotUpdate(snapshot=snap),
         SetSnapshotRefUpdate(ref_name=MAIN_BRANCH, type="branch", snapshot_id=snapshot_id)))
    return snapshot_id
