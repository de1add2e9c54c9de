"""Why beat uses `WindowedSchedule` (and its redbeat codec) instead of Celery's own schedules.

Simulates eight days of beat ticks (one a minute, the clock injected) for compaction (every 5 minutes, never
inside `compaction_paused`) and expire (daily, only inside `expiration_allowed`), with the shipped windows
and with minute-precision windows an operator may configure, and counts for each schedule:

- emitted: messages beat sends;
- refused: those a worker refuses at start because the window is closed (`scheduled_window_open` with the
  fleet's clock-skew tolerance): queue churn and, for expire, a night with no run;
- missed: open 5-minute slots (compaction) or open nights (expire) with no emission.

Candidates: ours; Celery's interval / daily crontab (no windows); the best crontab a person could write
from the windows (whole hours only: crontab has no minute ranges that cross an hour boundary).

    python bench/beat_windows.py
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from celery.schedules import crontab, schedule

from beat_schedule import WindowedSchedule
from lifecycle.jobs.specs import scheduled_window_open
from lifecycle.windows import in_any, parse_window

START = datetime(2026, 11, 2, tzinfo=UTC)   # a Monday
SKEW = 300.0


class Clock:
    def __init__(self) -> None:
        self.t = START

    def now(self) -> datetime:
        return self.t


def simulate(make: Callable[[Clock], Any]) -> list[datetime]:
    """Eight days of one-minute ticks (the eighth closes the seventh night's window)."""
    clock = Clock()
    sched, last, sent = make(clock), START - timedelta(days=30), []
    for _ in range(8 * 1440):
        if sched.is_due(last)[0]:
            sent.append(clock.t)
            last = clock.t
        clock.t += timedelta(minutes=1)
    return sent


def score(job: str, sent: list[datetime], paused: tuple[str, ...], allowed: tuple[str, ...]) -> tuple[int, int, int]:
    p = tuple(parse_window(w, "paused") for w in paused)
    a = tuple(parse_window(w, "allowed") for w in allowed)
    refused = sum(not scheduled_window_open(job, t, p, a, SKEW) for t in sent)
    accepted = [t for t in sent if scheduled_window_open(job, t, p, a, SKEW)]
    if job == "compact":   # open 5-minute slots with no accepted emission
        slots = [START + timedelta(minutes=5 * i) for i in range(8 * 288)]
        open_slots = [s for s in slots if not in_any(p, s)]
        hit = {(t - START) // timedelta(minutes=5) for t in accepted}
        missed = sum((s - START) // timedelta(minutes=5) not in hit for s in open_slots)
    else:                  # of the seven window occurrences opening in the week, those with no accepted emission
        opens = timedelta(minutes=a[0].start_minute)
        missed = 7 - len({(t - START - opens) // timedelta(days=1) for t in accepted} & set(range(7)))
    return len(sent), refused, missed


def hours_outside(windows: tuple[str, ...]) -> str:
    ws = tuple(parse_window(w, "w") for w in windows)
    return ",".join(str(h) for h in range(24)
                    if not any(in_any(ws, START.replace(hour=h, minute=m)) for m in range(60)))


def candidates(paused: tuple[str, ...], allowed: tuple[str, ...]) -> list[tuple[str, str, Callable[[Clock], Any]]]:
    hour, minute = int(allowed[0][:2]), int(allowed[0][3:5])
    outside = hours_outside(paused)
    return [
        ("compact", "WindowedSchedule (ours)",
         lambda c: WindowedSchedule("every", every=300, paused=paused, clock=c, margin=SKEW)),
        ("compact", "interval 300 s (no windows)", lambda c: schedule(timedelta(seconds=300), nowfun=c.now)),
        ("compact", f"crontab */5 hour={outside}", lambda c: crontab(minute="*/5", hour=outside, nowfun=c.now)),
        ("expire", "WindowedSchedule (ours)",
         lambda c: WindowedSchedule("daily", allowed=allowed, clock=c, margin=SKEW)),
        ("expire", "crontab daily 00:00 (no windows)", lambda c: crontab(minute=0, hour=0, nowfun=c.now)),
        ("expire", f"crontab {hour:02d}:{minute:02d} (window opens)",
         lambda c: crontab(minute=minute, hour=hour, nowfun=c.now)),
    ]


def main() -> None:
    cases = [("shipped windows", ("09:00-17:00",), ("00:00-06:00",)),
             ("minute-precision windows", ("09:30-17:15",), ("23:30-05:45",))]
    print(f"{'windows':<26} {'job':<8} {'schedule':<40} {'emitted':>8} {'refused':>8} {'missed':>7}")
    for name, paused, allowed in cases:
        for job, label, make in candidates(paused, allowed):
            emitted, refused, missed = score(job, simulate(make), paused if job == "compact" else (),
                                             allowed if job == "expire" else ())
            print(f"{name:<26} {job:<8} {label[:40]:<40} {emitted:>8} {refused:>8} {missed:>7}")


if __name__ == "__main__":
    main()
