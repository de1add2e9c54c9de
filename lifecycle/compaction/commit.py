"""A rewrite commit: one snapshot replacing exactly a group's input files with its outputs.

PyIceberg 0.12 has no RewriteFiles. `ReplaceFiles` subclasses its overwrite producer so that it validates
like Iceberg's RewriteFiles: the inputs must still be live and no new delete file may apply to them, while
concurrent appends (to any partition) never abort it. The summary reports operation `replace`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from pyiceberg.exceptions import CommitFailedException, ValidationException
from pyiceberg.manifest import DataFile
from pyiceberg.table import Table
from pyiceberg.table.refs import MAIN_BRANCH
from pyiceberg.table.snapshots import Operation, Summary
from pyiceberg.table.update.snapshot import CommitWindow, _OverwriteFiles
from pyiceberg.table.update.validate import (
    _validate_data_files_exist,
    _validate_no_new_deletes_for_data_files,
)

from lifecycle.errors import CommitConflictError, CommitOutcomeUnknownError


class ReplaceFiles(_OverwriteFiles):  # type: ignore[misc]
    """Overwrite producer with rewrite semantics and a `replace` summary."""

    def _validate_concurrency(self) -> None:
        window = self._commit_window
        if window is None or window.is_empty() or window.head is None or not self._deleted_data_files:
            return
        table = self._transaction._table
        _validate_data_files_exist(table, window.head, self._deleted_data_files, window.base)
        _validate_no_new_deletes_for_data_files(table, window.head, None, self._deleted_data_files, window.base)

    def _summary(self, snapshot_properties: Mapping[str, str] = {}) -> Summary:
        wanted: Operation = getattr(self, "_operation")  # noqa: B009 - typed for mypy
        self._operation = Operation.OVERWRITE  # PyIceberg's summary code only knows append/overwrite/delete
        try:
            summary = super()._summary(dict(snapshot_properties))
        finally:
            self._operation = wanted
        return Summary(wanted, **summary.additional_properties)


def commit_replace(
    table: Table, base_snapshot_id: int | None, deleted: Iterable[DataFile], added: Iterable[DataFile],
    properties: Mapping[str, str],
) -> int:
    """Commit one replace snapshot; returns its id.

    CommitConflictError: an input was removed or got a delete since `base_snapshot_id`, or the commit kept
    conflicting (nothing landed). CommitOutcomeUnknownError: any other failure (the commit may have landed).
    """
    tx = table.transaction()
    producer = ReplaceFiles(operation=Operation.REPLACE, transaction=tx, io=table.io,
                            snapshot_properties=dict(properties), branch=MAIN_BRANCH)
    producer._starting_snapshot_id = base_snapshot_id  # validate from the plan's pin, also on retries
    for df in deleted:
        producer.delete_data_file(df)
    for df in added:
        producer.append_data_file(df)
    try:
        producer._commit_window = CommitWindow.resolve(tx.table_metadata, base_snapshot_id, MAIN_BRANCH)
        producer._validate_concurrency()
        producer.commit()
        tx.commit_transaction()
    except (ValidationException, CommitFailedException) as exc:
        raise CommitConflictError(f"replace commit on {table.name()}: {exc}") from exc
    except Exception as exc:
        raise CommitOutcomeUnknownError(f"replace commit on {table.name()}: {type(exc).__name__}: {exc}") from exc
    return int(producer.snapshot_id)
