"""The job registry: one declaration per job, from which everything else is derived.

The CLI's job names and help, the Celery task names and queues (workers/config.py), beat's schedule
(beat_schedule.py), the advisory-lock scope, the quiet window that applies, whether a partition may be
named and whether the job writes table metadata (lifecycle/jobs/formats.py) all come from `JOBS`. Adding a job is
one package under lifecycle/ and one `JobSpec` line here. This module imports nothing of the jobs: the
runner is a "module:function" string resolved lazily (lifecycle/jobs/registry.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from lifecycle.errors import UnknownJobError
from lifecycle.windows import Gate as Gate
from lifecycle.windows import Window, gate_open


class LockScope(StrEnum):
    PARTITION = "partition"   # one lock per (job, table, partition); runs per partition
    TABLE = "table"           # one lock per table, shared by every table-wide job so they never interleave


@dataclass(frozen=True)
class Cadence:
    """When beat emits the job for each table: `every` N seconds, or once a day/week/month at `offset`
    seconds into the period; the message expires after `expires` seconds."""

    kind: str
    every: float = 0.0
    offset: float = 0.0
    expires: float = 3600.0


HOUR, DAY = 3600.0, 86400.0
TABLE_LOCK_KIND = "table-maintenance"


@dataclass(frozen=True)
class JobSpec:
    name: str             # the CLI name
    runner: str           # "module:function", imported only when the job runs
    queue: str            # the Celery queue of its task
    lock: LockScope
    gate: Gate
    writes_metadata: bool
    cadence: Cadence
    help: str

    @property
    def task(self) -> str:
        """The Celery task name (what Flower shows)."""
        return f"lifecycle.{self.name}"

    @property
    def per_partition(self) -> bool:
        return self.lock is LockScope.PARTITION

    @property
    def lock_kind(self) -> str:
        return self.name if self.per_partition else TABLE_LOCK_KIND


# Staggered cadences so table-wide jobs (one lock per table) do not collide: purge first, expire an hour later;
# orphans Saturday 18:00, manifests Sunday 18:00, schema history the 1st of the month at 20:00 (UTC).
JOBS: tuple[JobSpec, ...] = (
    JobSpec("compact", "lifecycle.compaction.job:run", "compaction", LockScope.PARTITION, Gate.OUTSIDE_PAUSED, True,
            Cadence("every", every=300, expires=300),
            "rewrite a partition's small files (bin-pack, sort or Z-order)"),
    JobSpec("expire", "lifecycle.expiration.job:run_expire", "expiration", LockScope.TABLE, Gate.INSIDE_ALLOWED, True,
            Cadence("daily", offset=HOUR, expires=2 * HOUR),
            "phase 1 of snapshot expiration: metadata commit, journal the unreachable files"),
    JobSpec("purge", "lifecycle.expiration.purge:run_purge", "expiration", LockScope.TABLE, Gate.INSIDE_ALLOWED, False,
            Cadence("daily", offset=0, expires=2 * HOUR),
            "phase 2, 24 h later: copy journaled files to the cold tier, then delete them"),
    JobSpec("clean-orphans", "lifecycle.orphans.job:run", "orphans", LockScope.TABLE, Gate.ALWAYS, False,
            Cadence("weekly", offset=5 * DAY + 18 * HOUR, expires=6 * HOUR),
            "delete files nothing references, guarded by age and live writers"),
    JobSpec("rewrite-manifests", "lifecycle.manifests.job:run", "metadata", LockScope.TABLE, Gate.ALWAYS, True,
            Cadence("weekly", offset=6 * DAY + 18 * HOUR, expires=6 * HOUR),
            "consolidate per-commit manifests into few partition-clustered ones"),
    JobSpec("compact-schema-history", "lifecycle.schema_history.job:run", "metadata", LockScope.TABLE, Gate.ALWAYS,
            True, Cadence("monthly", offset=20 * HOUR, expires=6 * HOUR),
            "drop unused schemas/specs/sort orders, prune the metadata log"),
)

SPECS: dict[str, JobSpec] = {s.name: s for s in JOBS}
JOB_NAMES: tuple[str, ...] = tuple(SPECS)
PARTITIONED_JOBS = frozenset(s.name for s in JOBS if s.per_partition)
METADATA_WRITERS = frozenset(s.name for s in JOBS if s.writes_metadata)
QUEUES: tuple[str, ...] = (*dict.fromkeys(s.queue for s in JOBS), "control")   # control: fan-out, reaper


def spec(name: str) -> JobSpec:
    """The job's declaration; UnknownJobError (bad input) for a name that is not one."""
    try:
        return SPECS[name]
    except KeyError:
        raise UnknownJobError(f"unknown job {name!r}; expected one of {', '.join(JOB_NAMES)}") from None


def lock_kind(job: str) -> str:
    """The advisory-lock kind of a job: its own per partition, or the one shared by every table-wide job."""
    return spec(job).lock_kind


def scheduled_window_open(job: str, when: datetime, paused: tuple[Window, ...], allowed: tuple[Window, ...],
                          tolerance: float = 0.0) -> bool:
    """May a scheduled `job` run at `when`? Its spec's gate (lifecycle/windows.py `gate_open`): compaction outside
    the paused windows, expire and purge inside the allowed ones, other jobs always."""
    return gate_open(spec(job).gate, when, paused, allowed, tolerance)
