"""Quiet windows: UTC "HH:MM-HH:MM" ranges, possibly crossing midnight."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime

from lifecycle.errors import ConfigError

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

