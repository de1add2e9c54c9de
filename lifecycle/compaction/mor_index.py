"""Merge-on-read bookkeeping: a snapshot's live data and delete files in some partitions, and which delete
files apply to which data file, by Iceberg's rules:

- a position delete applies to a data file of its own spec and partition whose data sequence number is at
  most its own (when it names exactly one data file, by `referenced_data_file` or equal `file_path` bounds,
  only to that file; otherwise to the files its `file_path` bounds may hold);
- an equality delete applies to a data file of its own spec and partition whose data sequence number is
  lower than its own; one written under an unpartitioned spec applies to every partition (a global delete).

Manifests are read as Iceberg's scan planning reads them, pruned by partition only: never by column
statistics (a data file they would prune can still be what a delete applies to) and without PyIceberg 0.12's
refusal of equality deletes, so a table that has some still plans.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from pyiceberg.expressions import AlwaysTrue, BooleanExpression
from pyiceberg.expressions.visitors import expression_evaluator, inclusive_projection, manifest_evaluator
from pyiceberg.manifest import DataFile, DataFileContent, ManifestEntry, ManifestFile
from pyiceberg.schema import Schema
from pyiceberg.table.delete_file_index import DeleteFileIndex, _applies_to_data_file, _referenced_data_file_path
from pyiceberg.table.metadata import TableMetadata
from pyiceberg.table.snapshots import Snapshot
from pyiceberg.utils.concurrent import ExecutorFactory

from lifecycle.iceberg.partitions import values_of

PartKey = tuple[int, tuple[Any, ...]]


def part_key(df: DataFile) -> PartKey:
    return int(df.spec_id), values_of(df.partition)


def seq_of(entry: ManifestEntry) -> int:
    return int(entry.sequence_number or 0)


def referenced(delete: DataFile) -> str | None:
    """The one data file a position delete names, if it names exactly one."""
    named: str | None = getattr(delete, "referenced_data_file", None) or _referenced_data_file_path(delete)
    return named


@dataclass
class SnapshotFiles:
    """Live entries of one snapshot in the selected partitions; each delete with the manifest that holds it."""

    data: list[ManifestEntry] = field(default_factory=list)
    deletes: list[tuple[ManifestEntry, str]] = field(default_factory=list)
    whole_table: bool = False         # nothing was pruned: global deletes can be judged too


def snapshot_files(metadata: TableMetadata, io: Any, snapshot: Snapshot | None,
                   expr: BooleanExpression) -> SnapshotFiles:
    """The live data and delete files of `snapshot` in the partitions `expr` may select (a superset)."""
    out = SnapshotFiles(whole_table=isinstance(expr, AlwaysTrue))
    if snapshot is None:
        return out
    schema, specs = metadata.schema(), metadata.specs()
    projected = {sid: inclusive_projection(schema, spec)(expr) for sid, spec in specs.items()}
    keep_manifest = {sid: manifest_evaluator(spec, schema, projected[sid]) for sid, spec in specs.items()}
    keep_file: dict[int, Callable[[Any], bool]] = {
        sid: expression_evaluator(Schema(*spec.partition_type(schema).fields), projected[sid], True)
        for sid, spec in specs.items()}

    def read(manifest: ManifestFile) -> list[tuple[ManifestEntry, str]]:
        match = keep_file[manifest.partition_spec_id]
        return [(e, manifest.manifest_path) for e in manifest.fetch_manifest_entry(io, discard_deleted=True)
                if match(e.data_file.partition)]

    manifests = [m for m in snapshot.manifests(io) if keep_manifest[m.partition_spec_id](m)]
    for entry, path in itertools.chain.from_iterable(ExecutorFactory.get_or_create().map(read, manifests)):
        if entry.data_file.content == DataFileContent.DATA:
            out.data.append(entry)
        else:
            out.deletes.append((entry, path))
    return out


class DeleteIndex:
    """Which live delete files apply to a data file (position deletes through PyIceberg's own index)."""

    def __init__(self, deletes: Iterable[ManifestEntry], unpartitioned_specs: set[int]) -> None:
        self._positions = DeleteFileIndex()
        self._equality: dict[PartKey, list[ManifestEntry]] = {}
        self._global: list[ManifestEntry] = []
        for entry in deletes:
            df = entry.data_file
            if df.content == DataFileContent.POSITION_DELETES:
                self._positions.add_delete_file(entry, partition_key=df.partition)
            elif int(df.spec_id) in unpartitioned_specs:
                self._global.append(entry)
            else:
                self._equality.setdefault(part_key(df), []).append(entry)

    def for_data(self, entry: ManifestEntry) -> list[DataFile]:
        """The delete files applying to this live data entry, position deletes first, in a stable order."""
        df, seq = entry.data_file, seq_of(entry)
        positions = sorted(self._positions.for_data_file(seq, df, partition_key=df.partition),
                           key=lambda d: d.file_path)
        equality = [e.data_file for e in itertools.chain(self._equality.get(part_key(df), ()), self._global)
                    if seq_of(e) > seq]
        return positions + sorted(equality, key=lambda d: d.file_path)


def unpartitioned_specs(metadata: TableMetadata) -> set[int]:
    return {s.spec_id for s in metadata.partition_specs if s.is_unpartitioned()}


def dangling(files: SnapshotFiles, removed: set[str], unpartitioned: set[int]) -> list[tuple[ManifestEntry, str]]:
    """The delete files of `files` that apply to no live data file once the data files `removed` are gone
    (data files added in the same commit get a newer sequence number, so no existing delete applies to them).
    Global equality deletes are judged only when `files` covers the whole table; otherwise they stay."""
    remaining = [e for e in files.data if e.data_file.file_path not in removed]
    by_path = {e.data_file.file_path: seq_of(e) for e in remaining}
    by_part: dict[PartKey, list[ManifestEntry]] = {}
    for e in remaining:
        by_part.setdefault(part_key(e.data_file), []).append(e)
    out = []
    for entry, manifest in files.deletes:
        df, seq = entry.data_file, seq_of(entry)
        if df.content == DataFileContent.POSITION_DELETES:
            target = referenced(df)
            if target is not None:
                alive = target in by_path and by_path[target] <= seq
            else:
                alive = any(seq_of(d) <= seq and _applies_to_data_file(df, d.data_file)
                            for d in by_part.get(part_key(df), ()))
        elif int(df.spec_id) in unpartitioned:
            alive = not files.whole_table or any(seq_of(d) < seq for d in remaining)
        else:
            alive = any(seq_of(d) < seq for d in by_part.get(part_key(df), ()))
        if not alive:
            out.append((entry, manifest))
    return out
