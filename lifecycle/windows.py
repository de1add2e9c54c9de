"""Quiet windows: UTC "HH:MM-HH:MM" ranges, possibly crossing midnight."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum

from lifecycle.errors import ConfigError


class Gate(StrEnum):
    """Which quiet window a scheduled run respects (manual runs bypass every window)."""

    OUTSIDE_PAUSED = "outside-paused"    # not inside `[windows] compaction_paused`
    INSIDE_ALLOWED = "inside-allowed"    # only inside `[windows] expiration_allowed`
    ALWAYS = "always"


_WINDOW = re.compile(r"^([01]\d|2[0-3]):([0-5]\d)-([01]\d|2[0-3]|24):([0-5]\d)$")


@dataclass(frozen=True)
class Window:
    start_minute: int
    end_minute: int
    text: str

    def contains(self, when: datetime) -> bool:
        minute = when.hour * 60 + when.minute
        if self.start_minute <= self.end_minute:
            return self.start_minute <= minute < self.end_minute
        return minute >= self.start_minute or minute < self.end_minute


def parse_window(text: str, key: str) -> Window:
    match = _WINDOW.match(text.strip()) if isinstance(text, str) else None
    if not match:
        raise ConfigError(f"{key}: invalid window {text!r}, expected UTC 'HH:MM-HH:MM'")
    sh, sm, eh, em = (int(g) for g in match.groups())
    if eh == 24 and em != 0:
        raise ConfigError(f"{key}: invalid window {text!r}, end past 24:00")
    start, end = sh * 60 + sm, eh * 60 + em
    if start == end:
        raise ConfigError(f"{key}: invalid window {text!r}, start equals end")
    return Window(start, end, text.strip())


def in_any(windows: tuple[Window, ...], when: datetime) -> bool:
    return any(w.contains(when) for w in windows)



def _instants(when: datetime, tolerance: float) -> list[datetime]:
    """`when`, the ends of [when - tolerance, when + tolerance] and every minute boundary between them: windows
    change only at minute boundaries, so a window touches the interval iff it contains one of these."""
    lo, hi = when - timedelta(seconds=tolerance), when + timedelta(seconds=tolerance)
    out = [when, lo, hi]
    t = lo.replace(second=0, microsecond=0) + timedelta(minutes=1)
    while t < hi:
        out.append(t)
        t += timedelta(minutes=1)
    return out


def gate_open(gate: Gate, when: datetime, paused: tuple[Window, ...], allowed: tuple[Window, ...],
              tolerance: float = 0.0) -> bool:
    """May a scheduled run under `gate` run at `when` on this host's clock? OUTSIDE_PAUSED outside the paused
    windows, INSIDE_ALLOWED inside the allowed ones, ALWAYS always. `tolerance` (`fleet.max_clock_skew_seconds`)
    widens the answer to any instant within that many seconds, so a host whose clock runs a little behind or
    ahead of beat's does not refuse (or stop) the run beat emitted inside the window."""
    if gate is Gate.OUTSIDE_PAUSED:
        return any(not in_any(paused, t) for t in _instants(when, tolerance))
    if gate is Gate.INSIDE_ALLOWED:
        return any(in_any(allowed, t) for t in _instants(when, tolerance))
    return True
