"""The beat schedule: which job, which tables, when, to which queue (docs/schedule.md explains why).

Every decision goes through `WindowedSchedule.is_due`, which reads an injectable clock, so tests can ask
"is compaction emitted at 18:00 UTC?" without waiting. Quiet windows apply at emission (and again when the
task starts and at every checkpoint): no compaction during `windows.compaction_paused` (09:00–17:00 UTC),
expire and purge only inside `windows.expiration_allowed` (00:00–06:00 UTC). Every message carries an
expiry so a stale one is dropped instead of running late.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from celery.schedules import schedstate, schedule

from lifecycle.clock import Clock, default_clock
from lifecycle.jobs.specs import JOBS, Gate, spec
from lifecycle.settings import Settings
from lifecycle.windows import Window, in_any, parse_window
from workers.config import JOB_QUEUES, JOB_TASKS, PLAN_COMPACTION_TASK, REAP_TASK

KINDS = ("every", "daily", "weekly", "monthly")
_MAX_CHECK = 300.0


class WindowedSchedule(schedule):  # type: ignore[misc]  # celery ships no types: its base is Any
    """A cadence (`every` N seconds, or once per day/week/month at `offset` into the period) gated by windows.

    `allowed`: emit only inside these UTC windows (a daily job then runs once per window occurrence, at
    `offset` + `margin` after the window opens: `margin`, the fleet's clock-skew allowance, keeps the emission
    inside the window for a worker whose clock runs behind beat's; at most half the window). `paused`: never
    emit inside these.
    """

    def __init__(self, kind: str, every: float = 0.0, offset: float = 0.0, allowed: Sequence[str] = (),
                 paused: Sequence[str] = (), clock: Clock | None = None, margin: float = 0.0) -> None:
        if kind not in KINDS:
            raise ValueError(f"unknown schedule kind {kind!r}")
        if kind == "every" and every <= 0:
            raise ValueError("an `every` schedule needs a positive period")
        self.kind, self.every, self.offset, self.margin = kind, float(every), float(offset), float(margin)
        self.allowed, self.paused = tuple(allowed), tuple(paused)
        self._allowed = tuple(parse_window(w, "schedule.allowed") for w in self.allowed)
        self._paused = tuple(parse_window(w, "schedule.paused") for w in self.paused)
        self.clock = clock or default_clock()
        super().__init__(run_every=timedelta(seconds=every or 86400), nowfun=self.clock.now)

    # ---- the decision --------------------------------------------------------------------------------

    def open_at(self, when: datetime) -> bool:
        if self._allowed and not in_any(self._allowed, when):
            return False
        return not in_any(self._paused, when)

    def _earliest(self, now: datetime) -> datetime:
        """When this period's run may start: the period (or window occurrence) start plus the offset."""
        midnight = now.replace(hour=0, minute=0, second=0, microsecond=0)
        if self.kind == "daily" and self._allowed:
            minute = now.hour * 60 + now.minute
            w: Window = next(w for w in self._allowed if w.contains(now))
            start = now.replace(second=0, microsecond=0) - timedelta(minutes=(minute - w.start_minute) % 1440)
            length = ((w.end_minute - w.start_minute) % 1440 or 1440) * 60.0
            start += timedelta(seconds=min(self.margin, length / 2))
        elif self.kind == "daily":
            start = midnight
        elif self.kind == "weekly":
            start = midnight - timedelta(days=now.weekday())
        else:
            start = midnight.replace(day=1)
        return start + timedelta(seconds=self.offset)

    def _until_open(self, now: datetime) -> float:
        base = now.replace(second=0, microsecond=0)
        for minutes in range(1, 1441):
            if self.open_at(base + timedelta(minutes=minutes)):
                return max(1.0, (base + timedelta(minutes=minutes) - now).total_seconds())
        return _MAX_CHECK

    def is_due(self, last_run_at: datetime | None) -> Any:
        now = self.clock.now()
        last = _aware(last_run_at)
        if not self.open_at(now):
            return schedstate(False, min(_MAX_CHECK, self._until_open(now)))
        if self.kind == "every":
            if last is None or (now - last).total_seconds() >= self.every:
                return schedstate(True, min(_MAX_CHECK, self.every))
            return schedstate(False, min(_MAX_CHECK, self.every - (now - last).total_seconds()))
        earliest = self._earliest(now)
        if now < earliest:
            return schedstate(False, min(_MAX_CHECK, max(1.0, (earliest - now).total_seconds())))
        if last is None or last < earliest:
            return schedstate(True, _MAX_CHECK)
        return schedstate(False, _MAX_CHECK)

    def remaining_estimate(self, last_run_at: datetime | None) -> timedelta:
        due, next_check = self.is_due(last_run_at)
        return timedelta(0) if due else timedelta(seconds=next_check)

    # ---- identity, pickling (the local scheduler's shelve), display ------------------------------------

    def params(self) -> dict[str, Any]:
        return {"kind": self.kind, "every": self.every, "offset": self.offset,
                "allowed": list(self.allowed), "paused": list(self.paused), "margin": self.margin}

    def __reduce__(self) -> Any:
        return (self.__class__, (self.kind, self.every, self.offset, self.allowed, self.paused, None, self.margin))

    def __eq__(self, other: object) -> bool:
        return isinstance(other, WindowedSchedule) and self.params() == other.params()

    def __hash__(self) -> int:
        return hash((self.kind, self.every, self.offset, self.allowed, self.paused, self.margin))

    def __repr__(self) -> str:
        return f"<WindowedSchedule {self.params()}>"


def _aware(when: datetime | None) -> datetime | None:
    if when is None:
        return None
    return when if when.tzinfo else when.replace(tzinfo=UTC)


@dataclass(frozen=True)
class Cadence:
    """One job's beat cadence (from its JobSpec in lifecycle/jobs/specs.py)."""

    job: str
    kind: str
    every: float = 0.0
    offset: float = 0.0
    expires: float = 3600.0


CADENCES = tuple(Cadence(s.name, s.cadence.kind, s.cadence.every, s.cadence.offset, s.cadence.expires) for s in JOBS)
REAP_EVERY = 60.0
# A new entry's last run: long ago, so it runs at its first chance (Celery would default to "now", which
# makes a daily job installed at 03:00 wait until the next night). Existing entries keep their last run.
NEVER = datetime(2000, 1, 1, tzinfo=UTC)


def cadence_schedule(c: Cadence, settings: Settings, clock: Clock | None = None) -> WindowedSchedule:
    allowed: tuple[str, ...] = ()
    paused: tuple[str, ...] = ()
    gate = spec(c.job).gate
    if gate is Gate.OUTSIDE_PAUSED:
        paused = settings.windows.compaction_paused
    elif gate is Gate.INSIDE_ALLOWED:
        allowed = settings.windows.expiration_allowed
    return WindowedSchedule(c.kind, every=c.every, offset=c.offset, allowed=allowed, paused=paused, clock=clock,
                            margin=settings.fleet.max_clock_skew_seconds)


def build_schedule(settings: Settings, tables: Sequence[str], clock: Clock | None = None) -> dict[str, Any]:
    """Celery `beat_schedule`: one entry per (job, table), plus the reaper."""
    entries: dict[str, Any] = {}
    for table in tables:
        for c in CADENCES:
            if spec(c.job).per_partition:  # a planning task fans out into per-partition tasks
                task, queue = PLAN_COMPACTION_TASK, "control"
            else:
                task, queue = JOB_TASKS[c.job], JOB_QUEUES[c.job]
            entries[f"{c.job} {table}"] = {
                "task": task,
                "schedule": cadence_schedule(c, settings, clock),
                "kwargs": {"table": table, "manual": False, "source": "beat"},
                "options": {"queue": queue, "expires": c.expires,
                            "kwargsrepr": f"job={c.job} table={table} scheduled"},  # what Flower shows
                "last_run_at": NEVER,
            }
    entries["reap"] = {
        "task": REAP_TASK,
        "schedule": WindowedSchedule("every", every=REAP_EVERY, clock=clock),
        "options": {"queue": "control", "expires": REAP_EVERY},
        "last_run_at": NEVER,
    }
    return entries


def beat_tables(settings: Settings) -> list[str]:
    """The tables beat schedules: the configured ones, else every table in the default namespace."""
    from lifecycle.iceberg.catalog import all_tables, open_catalog

    return all_tables(open_catalog(settings), settings)
