"""Rows of the state store as immutable values."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any


class PlanState(StrEnum):
    """A plan moves forward only, each step a checked compare-and-swap."""

    PLANNED = "planned"
    EXECUTING = "executing"
    READY = "ready"            # compaction: outputs staged, waiting for the table's batched commit
    COMMITTING = "committing"
    COMMITTED = "committed"
    DONE = "done"
    ABANDONED = "abandoned"    # the commit surely did not land; what it staged was removed
    FAILED = "failed"
    UNKNOWN = "unknown"        # commit outcome unknown: staged files stay until reconciled


class EntryState(StrEnum):
    """The state of one journal row (one file)."""

    PENDING = "pending"
    WRITTEN = "written"
    COPIED = "copied"
    COMMITTED = "committed"
    DELETED = "deleted"
    REMOVED = "removed"
    SKIPPED = "skipped"
    KEPT = "kept"


class JournalKind(StrEnum):
    """Which step wrote a journal row. Defined once here, so no job spells another job's literals."""

    STAGE = "stage"                        # a compaction output file, written before its commit
    STAGE_MANIFEST = "stage-manifest"      # a rewritten manifest or manifest list, written before its commit
    PURGE = "purge"                        # a file expiration made unreachable: purge copies it, then deletes it
    ORPHAN = "orphan"                      # an orphan candidate clean-orphans deletes
    METADATA_DELETE = "metadata-delete"    # a metadata file that left the metadata log
    SCRATCH = "scratch"                    # a compaction's local spill folder


# The members under their short names, as the jobs use them (plan states and entry states share `committed`).
PLANNED, EXECUTING, READY, COMMITTING = PlanState.PLANNED, PlanState.EXECUTING, PlanState.READY, PlanState.COMMITTING
COMMITTED, DONE, ABANDONED, FAILED, UNKNOWN = (PlanState.COMMITTED, PlanState.DONE, PlanState.ABANDONED,
                                               PlanState.FAILED, PlanState.UNKNOWN)
OPEN_PLAN_STATES = (PLANNED, EXECUTING, READY, COMMITTING, COMMITTED, UNKNOWN)
PENDING, WRITTEN, COPIED = EntryState.PENDING, EntryState.WRITTEN, EntryState.COPIED
DELETED, REMOVED, SKIPPED, KEPT = EntryState.DELETED, EntryState.REMOVED, EntryState.SKIPPED, EntryState.KEPT
STAGE, STAGE_MANIFEST, PURGE = JournalKind.STAGE, JournalKind.STAGE_MANIFEST, JournalKind.PURGE
ORPHAN, METADATA_DELETE = JournalKind.ORPHAN, JournalKind.METADATA_DELETE
STAGED_KINDS = (STAGE, STAGE_MANIFEST)
STAGED_OPEN_STATES = (PENDING, WRITTEN)          # staged, and neither committed nor removed yet
PURGE_QUEUED_STATES = (PENDING, COPIED)          # queued for purge, not yet deleted or skipped
FINISHED_ENTRY_STATES = (DELETED, REMOVED, SKIPPED, EntryState.COMMITTED, KEPT)   # nothing left to do for the row


@dataclass(frozen=True)
class Plan:
    plan_id: str
    job: str
    table_name: str
    partition: str
    state: PlanState
    base_snapshot_id: int | None
    run_id: str | None
    payload: dict[str, Any]
    progress: dict[str, Any]
    created_at: datetime
    updated_at: datetime


@dataclass(frozen=True)
class JournalEntry:
    entry_id: int
    plan_id: str
    table_name: str
    kind: str
    path: str
    state: EntryState
    bytes: int | None
    eligible_at: datetime | None
    info: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class NewEntry:
    path: str
    bytes: int | None = None
    eligible_at: datetime | None = None
    info: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class ColdObject:
    table_name: str
    snapshot_ids: tuple[int, ...]
    source_path: str
    cold_uri: str
    bytes: int
    checksum: str
    storage_class: str | None
    copied_at: datetime
    plan_id: str | None


@dataclass(frozen=True)
class Writer:
    writer_id: str
    host: str | None
    started_at: datetime | None
    last_heartbeat_at: datetime | None
    in_progress_paths: tuple[str, ...]


@dataclass(frozen=True)
class JobRun:
    run_id: str
    job: str
    table_name: str
    partition: str
    state: str
    manual: bool
    attempts: int
    max_attempts: int
    worker: str | None
    created_at: datetime
    heartbeat_at: datetime | None
    finished_at: datetime | None
    error: str | None
    counts: dict[str, Any]
    requeued_at: datetime | None = None   # the reaper's last re-send
    requeues: int = 0
