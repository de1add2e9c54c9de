"""A rewrite commit: ONE `replace` snapshot replacing one or more groups' inputs with their outputs.

PyIceberg 0.12 has no RewriteFiles. `ReplaceFiles` subclasses its overwrite producer so that it validates like
Iceberg's RewriteFiles on every attempt, PyIceberg's internal retries included: each group is checked from its
own base snapshot (lifecycle.compaction.validate). A group that conflicts is dropped from the batch and the
others are committed without it; appends by others only make the attempt retry (lifecycle.safety.commit),
never a second rewrite of the data. The summary reports operation `replace`.

Merge-on-read: the same snapshot removes every delete file of the groups' partitions that no longer applies
to any live data file (lifecycle.compaction.mor_commit), decided on each attempt at the head it builds on.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

from pyiceberg.exceptions import CommitFailedException, ValidationException
from pyiceberg.expressions import BooleanExpression, Or
from pyiceberg.manifest import DataFile, ManifestEntry, ManifestFile
from pyiceberg.table import Table
from pyiceberg.table.metadata import TableMetadata
from pyiceberg.table.refs import MAIN_BRANCH
from pyiceberg.table.snapshots import Operation, Summary
from pyiceberg.table.update.snapshot import _OverwriteFiles

from lifecycle.compaction.mor_commit import drop_deletes
from lifecycle.compaction.mor_index import dangling as find_dangling
from lifecycle.compaction.mor_index import snapshot_files, unpartitioned_specs
from lifecycle.compaction.validate import RewriteCheck, WindowCache, conflicts
from lifecycle.errors import PartitionError
from lifecycle.iceberg.partitions import parse_partition, row_filter
from lifecycle.safety.commit import DEFAULT_POLICY, RetryPolicy, commit_with_retries


@dataclass(frozen=True)
class GroupCommit:
    check: RewriteCheck
    partition: str                    # the partition's text, to find its live files at the head
    outputs: tuple[DataFile, ...]     # built once from the staged files' footers


@dataclass
class CommitResult:
    snapshot_id: int | None = None    # None: every group was dropped, nothing committed
    committed: list[str] = field(default_factory=list)
    dropped: dict[str, str] = field(default_factory=dict)   # group key -> the conflict that dropped it
    attempts: int = 0
    removed_deletes: list[str] = field(default_factory=list)  # dangling delete files the snapshot removed


class GroupConflict(ValidationException):
    """One group of the batch may not commit on the current head (raised inside PyIceberg's retry)."""

    def __init__(self, reasons: Mapping[str, str]) -> None:
        self.reasons = dict(reasons)
        super().__init__("; ".join(f"{k}: {v}" for k, v in self.reasons.items()))


def _partitions_filter(metadata: TableMetadata, partitions: Sequence[str]) -> BooleanExpression | None:
    """A row filter selecting these partitions of the default spec; None when they no longer parse."""
    spec, schema = metadata.spec(), metadata.schema()
    try:
        filters: list[BooleanExpression] = [row_filter(parse_partition(p, spec, schema), spec, schema)
                                            for p in sorted(set(partitions))]
    except PartitionError:
        return None
    return filters[0] if len(filters) == 1 else Or(*filters)


def head_files(table: Table, partitions: Sequence[str]) -> dict[str, DataFile]:
    """The live data files of these partitions at the table's current snapshot, by path."""
    snapshot = table.current_snapshot()
    expr = _partitions_filter(table.metadata, partitions)
    if snapshot is None or expr is None:
        return {}   # (the spec changed: every input counts as gone, the groups conflict)
    files = snapshot_files(table.metadata, table.io, snapshot, expr)
    return {e.data_file.file_path: e.data_file for e in files.data}


class ReplaceFiles(_OverwriteFiles):
    """Overwrite producer with rewrite semantics (validated per group from its base) and a `replace` summary."""

    groups: Sequence[GroupCommit] = ()
    window: WindowCache | None = None
    dangling: list[tuple[ManifestEntry, str]] = []   # delete files this attempt removes (and their manifests)

    def _manifests(self) -> list[ManifestFile]:
        meta = self._transaction.table_metadata
        expr = _partitions_filter(meta, [g.partition for g in self.groups])
        head = meta.snapshot_by_name(self._target_branch)
        self.dangling = [] if expr is None else find_dangling(
            snapshot_files(meta, self._io, head, expr), {p for g in self.groups for p in g.check.inputs},
            unpartitioned_specs(meta))
        return list(super()._manifests())

    def _existing_manifests(self) -> list[ManifestFile]:
        return drop_deletes(self, super()._existing_manifests(), self.dangling)

    def _validate_concurrency(self) -> None:
        table = self._transaction._table
        live = head_files(table, [g.partition for g in self.groups])
        bad = conflicts(table.metadata, table.io, [g.check for g in self.groups], live, self.window)
        if bad:
            raise GroupConflict(bad)

    def _summary(self, snapshot_properties: Mapping[str, str] = {}) -> Summary:
        wanted: Operation = getattr(self, "_operation")  # noqa: B009 - typed for mypy
        self._operation = Operation.OVERWRITE  # PyIceberg's summary code only knows append/overwrite/delete
        data_files: set[DataFile] = getattr(self, "_deleted_data_files")  # noqa: B009 - typed for mypy
        self._deleted_data_files = data_files | {e.data_file for e, _ in self.dangling}   # counted as removed
        try:
            summary = super()._summary(dict(snapshot_properties))
        finally:
            self._operation = wanted
            self._deleted_data_files = data_files
        return Summary(wanted, **summary.additional_properties)


def _commit_once(table: Table, groups: Sequence[GroupCommit], properties: Mapping[str, str],
                 window: WindowCache, removed: list[str]) -> int:
    live = head_files(table, [g.partition for g in groups])
    bad = conflicts(table.metadata, table.io, [g.check for g in groups], live, window)
    if bad:
        raise GroupConflict(bad)
    tx = table.transaction()
    producer = ReplaceFiles(operation=Operation.REPLACE, transaction=tx, io=table.io,
                            snapshot_properties=dict(properties), branch=MAIN_BRANCH)
    producer.groups, producer.window = groups, window
    for g in groups:
        for path in sorted(g.check.inputs):
            producer.delete_data_file(live[path])
        for df in g.outputs:
            producer.append_data_file(df)
    producer.commit()
    tx.commit_transaction()
    removed[:] = sorted(e.data_file.file_path for e, _ in producer.dangling)
    return int(producer.snapshot_id)


def commit_groups(table: Table, groups: Sequence[GroupCommit], properties: Callable[[list[str]], Mapping[str, str]],
                  policy: RetryPolicy = DEFAULT_POLICY,
                  on_retry: Callable[[int, BaseException], None] | None = None) -> CommitResult:
    """Commit the groups in one snapshot, dropping the ones that conflict (see the module docstring).

    `properties(keys)` gives the snapshot summary properties for the groups still in the batch. Raises
    CommitOutcomeUnknownError when the outcome is unknown (nothing may then be removed), CommitConflictError
    when the table kept changing past the retry policy (nothing landed).
    """
    result = CommitResult()
    pending = {g.check.key: g for g in groups}
    window = WindowCache()

    def attempt(n: int) -> int | None:
        result.attempts = n
        tbl = table.refresh()
        try:
            return (_commit_once(tbl, list(pending.values()), properties(sorted(pending)), window,
                                 result.removed_deletes) if pending else None)
        except GroupConflict as conflict:
            for key, reason in conflict.reasons.items():
                result.dropped[key] = reason
                pending.pop(key, None)
            if not pending:
                return None
            raise CommitFailedException(f"dropped {len(conflict.reasons)} conflicting group(s); retrying") from None

    result.snapshot_id = commit_with_retries(attempt, f"replace commit on {table.name()}", policy, on_retry)
    result.committed = sorted(pending) if result.snapshot_id is not None else []
    return result
