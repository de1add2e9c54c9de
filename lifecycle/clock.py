"""The one injectable clock. Every time decision uses it, never the database's now()."""

from __future__ import annotations

import os
import threading
from datetime import UTC, datetime, timedelta
from typing import Protocol


class Clock(Protocol):
    def now(self) -> datetime: ...


class SystemClock:
    """The worker's system clock, in UTC."""

    def now(self) -> datetime:
        return datetime.now(UTC)


class ManualClock:
    """A clock tests move by hand."""

    def __init__(self, start: datetime) -> None:
        if start.tzinfo is None:
            start = start.replace(tzinfo=UTC)
        self._now = start
        self._lock = threading.Lock()

    def now(self) -> datetime:
        with self._lock:
            return self._now

    def advance(self, delta: timedelta) -> None:
        with self._lock:
            self._now += delta

    def set(self, when: datetime) -> None:
        with self._lock:
            self._now = when if when.tzinfo else when.replace(tzinfo=UTC)


class OffsetClock:
    """The system clock shifted by a fixed offset (used by `LIFECYCLE_FAKE_NOW` in tests and demos)."""

    def __init__(self, offset: timedelta) -> None:
        self._offset = offset

    def now(self) -> datetime:
        return datetime.now(UTC) + self._offset


def default_clock() -> Clock:
    """System clock, unless LIFECYCLE_FAKE_NOW (ISO 8601) shifts it for a test or demo process."""
    fake = os.environ.get("LIFECYCLE_FAKE_NOW")
    if not fake:
        return SystemClock()
    when = datetime.fromisoformat(fake)
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return OffsetClock(when - datetime.now(UTC))


def to_millis(when: datetime) -> int:
    return int(when.timestamp() * 1000)
