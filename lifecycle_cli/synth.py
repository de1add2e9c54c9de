"""The synthetic archive: an `sda_observations`-like table for tests, the demo, the soak and benchmarks.

Partitions of many small files (sizes chosen), a history of N cheap snapshots with back-dated timestamps,
tags, and planted orphan files with chosen ages (mtimes set explicitly on local disk).
"""

from __future__ import annotations

import os
import random
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
from pyiceberg.catalog import Catalog
from pyiceberg.exceptions import NamespaceAlreadyExistsError
from pyiceberg.io.pyarrow import schema_to_pyarrow
from pyiceberg.manifest import (
    ManifestEntry,
    ManifestEntryStatus,
    ManifestFile,
    write_manifest,
    write_manifest_list,
)
from pyiceberg.partitioning import PartitionField, PartitionSpec
from pyiceberg.schema import Schema
from pyiceberg.table import Table
from pyiceberg.table.refs import SnapshotRefType
from pyiceberg.table.snapshots import Operation, Snapshot, Summary
from pyiceberg.table.update import AddSnapshotUpdate, AssertRefSnapshotId, SetSnapshotRefUpdate
from pyiceberg.transforms import DayTransform, IdentityTransform
from pyiceberg.types import BinaryType, LongType, NestedField, StringType, TimestamptzType

from lifecycle.clock import Clock, SystemClock, to_millis
from lifecycle.iceberg.datafiles import data_file_from_parquet

SCHEMA = Schema(
    NestedField(1, "mission_id", StringType(), required=False),
    NestedField(2, "ts", TimestamptzType(), required=False),
    NestedField(3, "payload_id", LongType(), required=False),
    NestedField(4, "sensor_kind", StringType(), required=False),
    NestedField(5, "readings", BinaryType(), required=False),
)
SPEC = PartitionSpec(
    PartitionField(source_id=1, field_id=1000, transform=IdentityTransform(), name="mission_id"),
    PartitionField(source_id=2, field_id=1001, transform=DayTransform(), name="day"),
)
SENSOR_KINDS = tuple(f"sensor-{i:02d}" for i in range(64))
READINGS_BYTES = 512  # random, incompressible: file size tracks row count
_ROW_OVERHEAD = 40


@dataclass(frozen=True)
class OrphanSpec:
    count: int
    age_days: float
    subdir: str = "data/orphans"


@dataclass
class ArchiveSpec:
    namespace: str = "archive"
    name: str = "sda_observations"
    partitions: Sequence[tuple[str, date]] = (("apollo-7", date(2024, 3, 15)),)
    files_per_partition: int | Sequence[int] = 10
    file_bytes: tuple[int, int] = (1_000_000, 10_000_000)
    history_snapshots: int = 0
    history_span_days: float = 60.0
    history_rewrite_every: int = 5     # every k-th history commit replaces an earlier file (overwrite)
    tags: dict[str, int] = field(default_factory=dict)   # tag name -> history snapshot index
    orphans: Sequence[OrphanSpec] = ()
    properties: dict[str, str] = field(default_factory=dict)
    seed: int = 7
    location: str | None = None


@dataclass
class Archive:
    table: Table
    identifier: str
    data_files: dict[str, list[str]]          # partition text -> paths of the small files
    history_snapshot_ids: list[int]
    tag_snapshot_ids: dict[str, int]
    orphans: list[tuple[str, float]]          # (path, age_days)
    rows: int


def _rows_for(nbytes: int) -> int:
    return max(1, nbytes // (READINGS_BYTES + _ROW_OVERHEAD))


def make_rows(rng: random.Random, mission: str, day: date, n: int, start_id: int = 0) -> pa.Table:
    base = datetime(day.year, day.month, day.day, tzinfo=UTC)
    ts = [base + timedelta(microseconds=rng.randrange(86_400_000_000)) for _ in range(n)]
    return pa.table({
        "mission_id": pa.array([mission] * n, pa.string()),
        "ts": pa.array(ts, pa.timestamp("us", tz="UTC")),
        "payload_id": pa.array([rng.randrange(1_000_000) for _ in range(n)], pa.int64()),
        "sensor_kind": pa.array([rng.choice(SENSOR_KINDS) for _ in range(n)], pa.string()),
        "readings": pa.array([rng.randbytes(READINGS_BYTES) for _ in range(n)], pa.binary()),
    })


def write_file(table: Table, path: str, rows: pa.Table) -> None:
    """Write a parquet file carrying Iceberg field ids, through the table's FileIO."""
    arrow_schema = schema_to_pyarrow(table.schema())
    with table.io.new_output(path).create(overwrite=True) as out:
        pq.write_table(rows.cast(arrow_schema), out, compression="zstd")


def partition_path(table: Table, mission: str, day: date) -> str:
    return f"{table.location().rstrip('/')}/data/mission_id={mission}/day={day.isoformat()}"


def create_table(catalog: Catalog, spec: ArchiveSpec) -> Table:
    try:
        catalog.create_namespace(spec.namespace)
    except NamespaceAlreadyExistsError:
        pass
    props = {"format-version": "2", "write.parquet.compression-codec": "zstd", **spec.properties}
    return catalog.create_table(f"{spec.namespace}.{spec.name}", SCHEMA, partition_spec=SPEC,
                                properties=props, location=spec.location)


def add_small_files(table: Table, spec: ArchiveSpec, rng: random.Random) -> tuple[dict[str, list[str]], int]:
    counts = spec.files_per_partition
    files: dict[str, list[str]] = {}
    rows = 0
    for i, (mission, day) in enumerate(spec.partitions):
        n = counts if isinstance(counts, int) else counts[i]
        key = f"mission_id={mission},day={day.isoformat()}"
        files[key] = []
        for _ in range(n):
            nbytes = rng.randint(*spec.file_bytes)
            t = make_rows(rng, mission, day, _rows_for(nbytes))
            path = f"{partition_path(table, mission, day)}/small-{uuid.uuid4().hex}.parquet"
            write_file(table, path, t)
            files[key].append(path)
            rows += t.num_rows
    all_paths = [p for ps in files.values() for p in ps]
    if all_paths:
        with table.transaction() as tx:
            fa = tx.update_snapshot(snapshot_properties=synth_lineage()).fast_append()
            with fa:
                for p in all_paths:
                    fa.append_data_file(data_file_from_parquet(table.io, tx.table_metadata, p))
    return files, rows


def synth_lineage() -> dict[str, str]:
    return {"writer.id": "synth", "writer.commit_hash": "synth", "writer.invocation_id": uuid.uuid4().hex}


def add_history(table: Table, spec: ArchiveSpec, rng: random.Random, clock: Clock) -> tuple[list[int], int]:
    """N cheap snapshots in ONE catalog commit, their timestamps spread over the span ending now.

    Manifests and manifest lists are written directly (one tiny data file per snapshot; every k-th
    snapshot also deletes an earlier file, so old snapshots reach files the current one does not):
    linear in N instead of PyIceberg's per-commit metadata copies.
    """
    n = spec.history_snapshots
    if n <= 0:
        return [], 0
    meta = table.metadata
    now = clock.now()
    start = now - timedelta(days=spec.history_span_days)
    step = (now - start) / n
    mission, day = spec.partitions[0]
    base = table.location().rstrip("/")
    live: list[tuple[ManifestFile, ManifestEntry]] = []   # one manifest per live history file
    seq = meta.next_sequence_number() - 1
    parent = meta.current_snapshot_id
    updates: list[Any] = []
    ids: list[int] = []
    rows = 0
    for i in range(n):
        seq += 1
        snapshot_id = _new_snapshot_id(rng)
        t = make_rows(rng, mission, day, 2, start_id=i)
        path = f"{partition_path(table, mission, day)}/hist-{i:06d}-{uuid.uuid4().hex[:8]}.parquet"
        write_file(table, path, t)
        df = data_file_from_parquet(table.io, meta, path)
        added = _write_manifest(table, meta, snapshot_id, [ManifestEntry.from_args(
            status=ManifestEntryStatus.ADDED, snapshot_id=snapshot_id, sequence_number=seq,
            file_sequence_number=seq, data_file=df)], base, deleted=False)
        rewrite = spec.history_rewrite_every and i % spec.history_rewrite_every == spec.history_rewrite_every - 1
        manifests = [added]
        operation = Operation.APPEND
        if rewrite and live:
            _, victim_entry = live.pop(rng.randrange(len(live)))
            manifests.append(_write_manifest(table, meta, snapshot_id, [victim_entry], base, deleted=True))
            operation = Operation.OVERWRITE
            rows -= victim_entry.data_file.record_count
        entry = ManifestEntry.from_args(status=ManifestEntryStatus.ADDED, snapshot_id=snapshot_id,
                                        sequence_number=seq, file_sequence_number=seq, data_file=df)
        live.append((added, entry))
        list_path = f"{base}/metadata/snap-{snapshot_id}-1-{uuid.uuid4()}.avro"
        with write_manifest_list(format_version=meta.format_version, output_file=table.io.new_output(list_path),
                                 snapshot_id=snapshot_id, parent_snapshot_id=parent, sequence_number=seq,
                                 avro_compression="deflate") as writer:
            writer.add_manifests(manifests + [m for m, _ in live[:-1]])
        rows += t.num_rows
        summary = Summary(operation=operation, **synth_lineage(), **{"added-data-files": "1"})
        snap = Snapshot(snapshot_id=snapshot_id, parent_snapshot_id=parent, sequence_number=seq,
                        timestamp_ms=to_millis(start + step * i), manifest_list=list_path, summary=summary,
                        schema_id=meta.current_schema_id)
        updates.append(AddSnapshotUpdate(snapshot=snap))
        updates.append(SetSnapshotRefUpdate(ref_name="main", type=SnapshotRefType.BRANCH, snapshot_id=snapshot_id,
                                                max_ref_age_ms=None, max_snapshot_age_ms=None,
                                                min_snapshots_to_keep=None))
        ids.append(snapshot_id)
        parent = snapshot_id
    requirement = AssertRefSnapshotId(ref="main", snapshot_id=meta.current_snapshot_id)
    table.catalog.commit_table(table, requirements=(requirement,), updates=tuple(updates))
    return ids, rows


def _new_snapshot_id(rng: random.Random) -> int:
    return rng.randrange(1, 2**63 - 1)


def _write_manifest(table: Table, meta: Any, snapshot_id: int, entries: list[ManifestEntry], base: str,
                    deleted: bool) -> ManifestFile:
    path = f"{base}/metadata/{uuid.uuid4()}-m0.avro"
    with write_manifest(format_version=meta.format_version, spec=meta.spec(), schema=meta.schema(),
                        output_file=table.io.new_output(path), snapshot_id=snapshot_id,
                        avro_compression="deflate") as writer:
        for e in entries:
            if deleted:
                writer.delete(e)
            else:
                writer.add_entry(e)
    mf = writer.to_manifest_file()
    seq = entries[0].sequence_number if not deleted else None
    if seq is not None:
        mf.sequence_number = seq
        mf.min_sequence_number = seq
    return mf


def plant_orphans(
    table: Table, orphans: Sequence[OrphanSpec], rng: random.Random, clock: Clock
) -> list[tuple[str, float]]:
    out: list[tuple[str, float]] = []
    base = table.location().rstrip("/")
    local = base.startswith("file://") or base.startswith("/")
    for o in orphans:
        for _ in range(o.count):
            path = f"{base}/{o.subdir}/orphan-{uuid.uuid4().hex}.parquet"
            with table.io.new_output(path).create(overwrite=True) as f:
                f.write(rng.randbytes(rng.randint(100, 5000)))
            if local:
                mtime = (clock.now() - timedelta(days=o.age_days)).timestamp()
                os.utime(path.removeprefix("file://"), (mtime, mtime))
            out.append((path, o.age_days))
    return out


def build_archive(catalog: Catalog, spec: ArchiveSpec | None = None, clock: Clock | None = None) -> Archive:
    spec = spec or ArchiveSpec()
    clock = clock or SystemClock()
    rng = random.Random(spec.seed)
    table = create_table(catalog, spec)
    hist_ids, hist_rows = add_history(table, spec, rng, clock)
    table = table.refresh()
    tag_ids: dict[str, int] = {}
    if spec.tags:
        with table.manage_snapshots() as ms:
            for name, index in spec.tags.items():
                ms.create_tag(hist_ids[index], name)
                tag_ids[name] = hist_ids[index]
    files, rows = add_small_files(table, spec, rng)
    table = table.refresh()
    orphans = plant_orphans(table, spec.orphans, rng, clock)
    return Archive(table, f"{spec.namespace}.{spec.name}", files, hist_ids, tag_ids, orphans, rows + hist_rows)
