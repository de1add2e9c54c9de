"""One flat errors module. Every error the CLI maps to an exit status lives here."""

from __future__ import annotations

from typing import Any

from pyiceberg.exceptions import ValidationException


class LifecycleError(Exception):
    """Base of every error this package raises on purpose."""

    exit_code = 1


class BadInputError(LifecycleError):
    """Input from an operator or a configuration file was wrong; nothing was changed (exit 2)."""

    exit_code = 2


class ConfigError(BadInputError):
    """The configuration is invalid: names the key."""


class UnknownTableError(BadInputError):
    """The table or namespace does not exist in the catalog."""


class UnknownJobError(BadInputError):
    """The job name is not one of the design's CLI names."""


class PartitionError(BadInputError):
    """A partition string is malformed or names a field the spec does not have."""


class ServiceUnavailableError(LifecycleError):
    """A service (database, broker, object store) could not be reached."""

    exit_code = 2


class StaleStateError(LifecycleError):
    """A compare-and-swap state transition found another state than the one expected."""


class LockLostError(LifecycleError):
    """The advisory lock connection died: the holder must stop before any further side effect."""


class StopRequested(LifecycleError):
    """A checkpoint found the job must stop (quiet window, shutdown); the run exits cleanly."""

    exit_code = 0


class CommitConflictError(LifecycleError):
    """A concurrent commit removed a plan input; the group is abandoned."""


class CommitOutcomeUnknownError(LifecycleError):
    """A commit's outcome is unknown (timeout, connection loss); staged files must stay."""


class UnsafeDeleteError(LifecycleError):
    """A delete would touch a path outside the table location or with a mismatched scheme."""


class UnsupportedFormatError(LifecycleError):
    """The job would have to write metadata in a table format the installed PyIceberg cannot write; refused
    before anything is planned or written (exit 1 for that table)."""


class GcDisabledError(UnsafeDeleteError):
    """The table sets `gc.enabled=false`: no job may delete its files (exit 1, nothing changed)."""


class LineageValidationError(LifecycleError, ValidationException):
    """A snapshot summary lacks required lineage fields; the commit is refused before the CAS.

    Also a PyIceberg `ValidationException`: PyIceberg never retries it (a `CommitFailedException` would be
    retried) and, on it, deletes the manifests and manifest list the refused commit wrote.
    """

    def __init__(self, table: str, missing: list[str], operation: str | None) -> None:
        self.table = table
        self.missing = list(missing)
        self.operation = operation
        super().__init__(
            f"commit to {table} rejected: snapshot summary lacks lineage field(s) {', '.join(self.missing)}"
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "error": "lineage_validation_failed",
            "table": self.table,
            "missing": self.missing,
            "operation": self.operation,
            "message": str(self),
        }
