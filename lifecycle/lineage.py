"""The lineage gate: every snapshot a commit adds must say who wrote it.

`guard_catalog(catalog)` returns a PyIceberg catalog (the same class, same connection) whose
`commit_table` validates the summary of every `AddSnapshotUpdate` BEFORE delegating to the real commit, so a
refused commit never reaches the catalog's compare-and-swap: the metadata pointer does not move. The error,
`LineageValidationError`, is a PyIceberg `ValidationException`: PyIceberg does not retry it and deletes the
manifests and manifest list it wrote for the refused snapshot.

Data files of a refused commit: by default the gate deletes NOTHING. It did not create them, and it cannot
tell a file the writer just wrote from one it registered (`add_files` of pre-existing files, which the writer
still owns). They stay, and the orphan job removes them once they are old enough unless a live writer
protects them. A writer whose commits only ever add files it wrote itself may opt in with
`remove_refused_files=True`: the data files the refused snapshot ADDED, inside the table location and
referenced by no snapshot, are then deleted through the one delete path (lifecycle.safety.deletes).
"""

from __future__ import annotations

import functools
import uuid
from collections.abc import Mapping
from typing import Any

from pyiceberg.catalog import Catalog
from pyiceberg.manifest import ManifestEntryStatus, read_manifest_list
from pyiceberg.table.update import AddSnapshotUpdate

from lifecycle import log, metrics
from lifecycle.errors import LineageValidationError
from lifecycle.iceberg.reachability import reachable_from
from lifecycle.safety.deletes import TableFiles, delete_files
from lifecycle.safety.paths import PathSet, is_under, parse

REQUIRED_FIELDS = ("operation", "writer.id", "writer.commit_hash", "writer.invocation_id")

__all__ = ["REQUIRED_FIELDS", "LineageValidationError", "guard_catalog", "lineage_properties", "validate_summary"]

_log = log.get("lifecycle.lineage")


def _as_mapping(summary: Any) -> dict[str, str]:
    """A PyIceberg `Summary` (operation + additional properties) or a plain mapping, as a flat dict."""
    if summary is None:
        return {}
    if isinstance(summary, Mapping) and not hasattr(summary, "additional_properties"):
        return {str(k): "" if v is None else str(v) for k, v in summary.items()}
    out: dict[str, str] = {}
    try:
        out.update({str(k): str(v) for k, v in summary.additional_properties.items()})
    except AttributeError:
        pass
    operation = getattr(summary, "operation", None)
    if operation is not None:
        out["operation"] = str(getattr(operation, "value", operation))
    return out


def missing_fields(summary: Any) -> list[str]:
    """The required fields absent (or blank) in a summary, in REQUIRED_FIELDS order."""
    fields = _as_mapping(summary)
    return [name for name in REQUIRED_FIELDS if not fields.get(name, "").strip()]


def validate_summary(summary: Any, table: str) -> None:
    """Raise LineageValidationError naming every missing field; return None when all four are present."""
    missing = missing_fields(summary)
    if missing:
        raise LineageValidationError(table, missing, _as_mapping(summary).get("operation") or None)


def lineage_properties(writer_id: str, commit_hash: str, invocation_id: str | None = None) -> dict[str, str]:
    """Snapshot properties a writer passes as `snapshot_properties=` (the operation comes from PyIceberg).

    `invocation_id` identifies this run of the writer (a job run, a request id); a fresh UUID by default.
    """
    values = {"writer.id": writer_id, "writer.commit_hash": commit_hash,
              "writer.invocation_id": invocation_id or uuid.uuid4().hex}
    blank = [k for k, v in values.items() if not v or not v.strip()]
    if blank:
        raise ValueError(f"lineage_properties: blank {', '.join(blank)}")
    return values


def table_name(table: Any) -> str:
    name = table.name() if callable(getattr(table, "name", None)) else table
    return ".".join(name) if isinstance(name, tuple | list) else str(name)


class _LineageGuard(Catalog):
    """Mixed in front of the wrapped catalog's own class by `guard_catalog`."""

    _lineage_remove_refused: bool = False

    def commit_table(self, table: Any, requirements: tuple[Any, ...], updates: tuple[Any, ...]) -> Any:
        name = table_name(table)
        for update in updates:
            if not isinstance(update, AddSnapshotUpdate):
                continue
            try:
                validate_summary(update.snapshot.summary, name)
            except LineageValidationError as err:
                metrics.LINEAGE_FAILURES.labels(name).inc()
                removed = remove_refused_files(table, update.snapshot) if self._lineage_remove_refused else []
                _log.warning("lineage.refused", table=name, missing=err.missing, operation=err.operation,
                             snapshot_id=update.snapshot.snapshot_id, data_files_removed=len(removed))
                raise
        # the concrete catalog class follows this mixin in the MRO (guard_catalog), so super() is not abstract
        return super().commit_table(table, requirements, updates)  # type: ignore[safe-super]  # see above


@functools.cache
def _guarded_class(cls: Any) -> Any:
    return type(f"LineageGuarded{cls.__name__}", (_LineageGuard, cls), {})


def guard_catalog(catalog: Any, remove_refused_files: bool = False) -> Any:
    """A catalog of the same class sharing the wrapped one's state, with the lineage gate on every commit.

    Load tables through the returned catalog: a table's commits go through the catalog it was loaded from.
    """
    if isinstance(catalog, _LineageGuard):
        return catalog
    cls: Any = _guarded_class(catalog.__class__)
    guarded = cls.__new__(cls)
    guarded.__dict__.update(catalog.__dict__)
    guarded._lineage_remove_refused = remove_refused_files
    return guarded


def remove_refused_files(table: Any, snapshot: Any) -> list[str]:
    """Delete the data files a refused snapshot added that nothing else references (opt-in); their paths."""
    io = table.io
    added: set[str] = set()
    try:
        manifests = read_manifest_list(io.new_input(snapshot.manifest_list))
        for mf in manifests:
            if mf.added_snapshot_id != snapshot.snapshot_id:
                continue
            for entry in mf.fetch_manifest_entry(io, discard_deleted=True):
                if entry.status == ManifestEntryStatus.ADDED and entry.snapshot_id == snapshot.snapshot_id:
                    added.add(entry.data_file.file_path)
        referenced = PathSet(reachable_from(io, table.metadata, table.metadata.snapshots).all_paths())
        files = TableFiles.of(table, table_name(table))
        prefix = files.prefix
        doomed = [p for p in sorted(added) if p not in referenced and is_under(parse(p), prefix, files.schemes)]
        outcome = delete_files(doomed, files, "lineage-gate")
    except Exception as exc:  # never let cleanup hide the lineage error; the orphan job is the backstop
        _log.warning("lineage.cleanup-skipped", table=table_name(table), error=f"{type(exc).__name__}: {exc}")
        return []
    for path, err in outcome.failed.items():
        _log.warning("lineage.cleanup-failed", path=path, error=err)
    return outcome.done
