"""Values shared by every job: the request, the result, and the context of one run."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from pyiceberg.catalog import Catalog

from lifecycle.bandwidth import Limiter
from lifecycle.clock import Clock
from lifecycle.errors import StopRequested
from lifecycle.jobs.specs import JOB_NAMES as JOB_NAMES
from lifecycle.jobs.specs import scheduled_window_open
from lifecycle.progress import Progress, ProgressSink
from lifecycle.safety.paths import Schemes
from lifecycle.settings import Settings, TableSettings
from lifecycle.state.locks import AdvisoryLock
from lifecycle.state.store import StateStore


# Status of a finished run.
class Status(StrEnum):
    """How a run ended (JobResult.status; the CLI's exit status and the runs metric's outcome derive from it)."""

    DONE = "done"
    NOTHING_TO_DO = "nothing-to-do"
    STOPPED = "stopped"          # a checkpoint stopped it cleanly; the next run continues
    LOCKED = "locked"            # another run holds the lock: acknowledged, nothing done
    DRY_RUN = "dry-run"
    ABANDONED = "abandoned"      # work was thrown away (a group lost to a real conflict): never reported as done
    QUARANTINED = "quarantined"  # the (job, table, partition) failed too often: skipped until released


DONE, NOTHING_TO_DO, STOPPED, LOCKED = Status.DONE, Status.NOTHING_TO_DO, Status.STOPPED, Status.LOCKED
DRY_RUN, ABANDONED = Status.DRY_RUN, Status.ABANDONED


@dataclass(frozen=True)
class JobRequest:
    job: str
    table: str                 # qualified namespace.table
    partition: str | None = None
    dry_run: bool = False
    manual: bool = True        # manual runs bypass quiet windows, never the bandwidth budget
    run_id: str | None = None


@dataclass
class JobResult:
    job: str
    table: str
    partition: str | None
    status: str
    counts: dict[str, int | float] = field(default_factory=dict)
    plan: Any = None           # JSON-ready plan for --dry-run
    detail: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "job": self.job, "table": self.table, "partition": self.partition,
            "status": self.status, "counts": self.counts,
        }
        if self.plan is not None:
            out["plan"] = self.plan
        if self.detail:
            out["detail"] = list(self.detail)
        return out


@dataclass
class JobContext:
    settings: Settings
    catalog: Catalog
    store: StateStore
    clock: Clock
    limiter: Limiter
    db_url: str
    manual: bool = True
    lock: AdvisoryLock | None = None
    shutdown: threading.Event = field(default_factory=threading.Event)
    on_progress: ProgressSink | None = None    # e.g. the terminal bar of `lifecycle-cli run`
    # a failed run is logged at ERROR for the fleet; the CLI reports it itself in one line (INFO here)
    log_failures: bool = True

    def table_settings(self, table: str) -> TableSettings:
        return self.settings.for_table(table)

    def schemes(self) -> Schemes:
        """Which URI schemes name the same store, for the path identity (`[orphans] equivalent_schemes`)."""
        return Schemes(self.settings.orphans.equivalent_schemes)

    def window_open(self, job: str) -> bool:
        """Scheduled runs respect quiet windows; manual runs bypass them."""
        if self.manual:
            return True
        # lifecycle/windows.py, with the fleet's clock-skew tolerance (beat emits inside the window with margin)
        return scheduled_window_open(job, self.clock.now(), self.settings.windows.paused(),
                                     self.settings.windows.allowed(), self.settings.fleet.max_clock_skew_seconds)

    def checkpoint(self, job: str) -> None:
        """Between steps: stop cleanly outside the window or on shutdown; stop hard if the lock is lost."""
        if self.lock is not None:
            self.lock.ensure_alive()
        if self.shutdown.is_set():
            raise StopRequested(f"{job}: shutdown requested")
        if not self.window_open(job):
            raise StopRequested(f"{job}: outside its window at {self.clock.now():%H:%M} UTC")

    def progress(self, message: str, done: int | None = None, total: int | None = None, unit: str = "") -> None:
        """Report progress (lifecycle/progress.py): `done` of `total` `unit`s, or just a message."""
        if self.on_progress is not None:
            self.on_progress(Progress(message, done, total, unit))

