"""The progress bar of `lifecycle-cli run` on a terminal: one line on stderr, redrawn in place.

Only drawn when stderr is a terminal and the output is not --json; piped or redirected runs stay quiet.
A message without numbers keeps the last numbers of the same step (the text before the first colon, e.g.
"compact archive.t [day=...]"): "wrote 3/8 files" inside a compaction group keeps the group's bytes bar.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from typing import TextIO

from lifecycle.progress import Progress

BAR = 24
_UNITS = ("B", "KB", "MB", "GB", "TB")


def human(n: int, unit: str) -> str:
    if unit != "bytes":
        return f"{n:,}"
    value = float(n)
    for suffix in _UNITS:
        if value < 1024 or suffix == _UNITS[-1]:
            return f"{value:.0f} {suffix}" if suffix == "B" else f"{value:.1f} {suffix}"
        value /= 1024
    raise AssertionError("unreachable")


def fit(message: str, room: int) -> str:
    """The message in `room` characters: its middle gives way first (the job and the step stay readable)."""
    if len(message) <= room:
        return message
    if room < 5:
        return message[:room]
    head = (room - 1) // 2
    return message[:head] + "…" + message[len(message) - (room - 1 - head):]


def render(message: str, done: int | None, total: int | None, unit: str, width: int = 100) -> str:
    if done is None:
        return fit(message, width)
    if not total:
        counter = f"{human(done, unit)} {unit}".rstrip()
        return f"{counter}  {fit(message, width - len(counter) - 2)}"
    fraction = max(0.0, min(1.0, done / total))
    filled = round(fraction * BAR)
    bar = "#" * filled + "-" * (BAR - filled)
    amount = f"{human(done, unit)}/{human(total, unit)}" + ("" if unit == "bytes" else f" {unit}")
    head = f"[{bar}] {fraction * 100:3.0f}%  {amount}  "
    return head + fit(message, width - len(head))


class TerminalBar:
    """A `ProgressSink` drawing on `stream` at most every `interval` seconds; always at 100 % and when the
    unit changes (a new phase of the run)."""

    def __init__(self, stream: TextIO, interval: float = 0.1,
                 monotonic: Callable[[], float] = time.monotonic) -> None:
        self.stream = stream
        self.interval = interval
        self._monotonic = monotonic
        self._last = float("-inf")
        self._numbers: tuple[int | None, int | None, str] = (None, None, "")
        self._step = ""
        self._drawn_unit = ""
        self.drawn = False

    def __call__(self, p: Progress) -> None:
        step = p.message.split(":", 1)[0]
        if p.done is not None:
            self._numbers = (p.done, p.total, p.unit)
        elif step != self._step:
            self._numbers = (None, None, "")
        self._step = step
        now = self._monotonic()
        finished = p.done is not None and p.total is not None and p.done >= p.total
        new_phase = self._numbers[2] != self._drawn_unit   # e.g. the listing's first count, or its deletes
        if now - self._last < self.interval and not finished and not new_phase:
            return
        self._last, self._drawn_unit = now, self._numbers[2]
        self.stream.write("\r\033[K" + render(p.message, *self._numbers, width=self._columns() - 1))
        self.stream.flush()
        self.drawn = True

    def _columns(self) -> int:
        try:
            columns = os.get_terminal_size(self.stream.fileno()).columns
        except (AttributeError, OSError, ValueError):
            columns = 0
        return max(40, columns or 100)

    def clear(self) -> None:
        if self.drawn:
            self.stream.write("\r\033[K")
            self.stream.flush()
            self.drawn = False
