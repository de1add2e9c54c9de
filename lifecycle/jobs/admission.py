"""One request validation for every entry point: the CLI (`run`, `enqueue`), each Celery task, the reaper's
re-sends and beat's emissions (checked by the worker that takes them).

A request names a known job and a table of the fleet's set (the configured tables, else the tables of the
default namespace) that the catalog knows; a partition only for a per-partition job, parsed against the
table's spec and formatted back, so one partition has one text and one lock key whatever the field order.
A message may claim `manual` or its own `run_id` only when signed with the fleet secret (lifecycle/fleet/signing.py).
A refused message is acknowledged, logged once and counted by reason: it runs nothing and leaves no row.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from pyiceberg.catalog import Catalog

from lifecycle.errors import BadInputError, PartitionError, UnknownJobError, UnknownTableError
from lifecycle.fleet import signing
from lifecycle.iceberg.catalog import qualify, resolve_table
from lifecycle.iceberg.partitions import parse_partition
from lifecycle.jobs.registry import PARTITIONED_JOBS, check_job
from lifecycle.settings import Settings

# Why a message was refused: the only label of lifecycle_messages_rejected_total (bounded, never a table).
REASONS = ("bad-field", "unknown-job", "unknown-table", "table-not-in-fleet", "bad-partition",
           "partition-on-table-job", "unsigned", "bad-signature", "expired-signature", "run-id-mismatch",
           "quarantined")
MESSAGE_FIELDS = frozenset({"table", "partition", "manual", "run_id", "auth", "source"})
_MAX_TEXT = {"table": 512, "partition": 2048, "run_id": 128, "auth": 160, "source": 32}


class RequestRejected(BadInputError):
    """A request no entry point may run; `reason` is one of REASONS."""

    def __init__(self, reason: str, message: str) -> None:
        assert reason in REASONS, reason
        super().__init__(message)
        self.reason = reason


@dataclass(frozen=True)
class Admitted:
    job: str
    table: str                 # qualified, in the fleet's table set
    partition: str | None      # canonical text (per-partition jobs only): the lock key is derived from it
    manual: bool               # verified: only a signed message is manual
    run_id: str | None         # verified: only a signed message names its run


def fleet_table(settings: Settings, catalog: Catalog, name: str) -> tuple[str, Any]:
    """(identifier, table) of a table of the fleet's set, or RequestRejected."""
    try:
        identifier = qualify(settings, name)
    except UnknownTableError as exc:
        raise RequestRejected("unknown-table", str(exc)) from None
    try:
        identifier, tbl = resolve_table(catalog, settings, identifier)
    except UnknownTableError as exc:
        raise RequestRejected("unknown-table", str(exc)) from None
    configured = settings.configured_tables()
    if configured and identifier not in configured:
        raise RequestRejected("table-not-in-fleet", f"table {identifier!r} is not one of the configured tables"
                                                    f" ([tables.\"...\"] in {settings.source})")
    namespace = settings.catalog.default_namespace
    if not configured and identifier.rsplit(".", 1)[0] != namespace:
        raise RequestRejected("table-not-in-fleet", f"table {identifier!r} is outside the default namespace"
                                                    f" {namespace!r} and no tables are configured")
    return identifier, tbl


def validate_request(settings: Settings, catalog: Catalog, job: str, table: str,
                     partition: str | None) -> tuple[str, str | None]:
    """(identifier, canonical partition) of a valid request, else RequestRejected (exit 2, nothing changed)."""
    try:
        check_job(job)
    except UnknownJobError as exc:
        raise RequestRejected("unknown-job", str(exc)) from None
    identifier, tbl = fleet_table(settings, catalog, table)
    if partition is None:
        return identifier, None
    if job not in PARTITIONED_JOBS:
        raise RequestRejected("partition-on-table-job",
                              f"--partition: job {job!r} runs per table, not per partition")
    try:
        return identifier, parse_partition(partition, tbl.spec(), tbl.schema()).text
    except PartitionError as exc:
        raise RequestRejected("bad-partition", str(exc)) from None


def _fields(fields: Mapping[str, Any]) -> dict[str, Any]:
    unknown = sorted(set(fields) - MESSAGE_FIELDS)
    if unknown:
        raise RequestRejected("bad-field", f"unexpected message field(s) {', '.join(unknown)[:200]}")
    out = {"table": fields.get("table"), "partition": fields.get("partition"),
           "manual": fields.get("manual", False), "run_id": fields.get("run_id"), "auth": fields.get("auth"),
           "source": fields.get("source")}
    if not isinstance(out["manual"], bool):
        raise RequestRejected("bad-field", "manual: expected true or false")
    if not isinstance(out["table"], str):
        raise RequestRejected("bad-field", "table: expected a string")
    for key, limit in _MAX_TEXT.items():
        value = out[key]
        if value is not None and (not isinstance(value, str) or len(value) > limit):
            raise RequestRejected("bad-field", f"{key}: expected a string of at most {limit} characters")
    return out


PLAN = "plan-compaction"  # the compaction planning message: signed under its own name, never a partition


def admit_message(settings: Settings, catalog: Catalog, job: str, fields: Mapping[str, Any]) -> Admitted:
    """Validate one fleet message (the keyword arguments of a job task, or of the planning task when `job` is
    PLAN) before anything runs."""
    f = _fields(fields)
    if job == PLAN and (f["partition"] is not None or f["run_id"] is not None):
        raise RequestRejected("bad-field", "the planning message takes a table, never a partition or run id")
    if f["manual"] or f["run_id"] is not None:
        if f["auth"] is None:
            raise RequestRejected("unsigned", "a message claiming manual or a run id must be signed")
        why = signing.verify(signing.fleet_secret(settings), f["auth"], job, f["table"], f["partition"],
                             f["manual"], f["run_id"], skew=settings.fleet.max_clock_skew_seconds)
        if why is not None:
            raise RequestRejected(why, f"message signature: {why}")
    real_job = "compact" if job == PLAN else job
    identifier, partition = validate_request(settings, catalog, real_job, f["table"], f["partition"])
    return Admitted(real_job, identifier, partition, f["manual"], f["run_id"])


def sign_message(settings: Settings, job: str, table: str, partition: str | None, manual: bool,
                 run_id: str | None) -> str:
    """`auth` for a message the fleet itself sends (CLI enqueue, fan-out, reaper)."""
    return signing.sign(signing.fleet_secret(settings), job, table, partition, manual, run_id)
