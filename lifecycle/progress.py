"""Progress of a long job step: what a job reports through `JobContext.progress`.

A job calls `ctx.progress(message, done=, total=, unit=)`; the context hands a `Progress` to whoever listens
(`lifecycle-cli run` on a terminal draws a bar; a worker listens to nothing). `done`/`total` are in `unit`
(`bytes`, `files`, `objects`, `groups`); `total` may be unknown (None): a counter instead of a bar.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import TypeVar

T = TypeVar("T")


@dataclass(frozen=True)
class Progress:
    message: str
    done: int | None = None
    total: int | None = None
    unit: str = ""

    def __str__(self) -> str:
        return self.message

    def __contains__(self, text: str) -> bool:
        """`"committing" in progress`: sinks written for the plain-message progress keep working."""
        return text in self.message

    @property
    def fraction(self) -> float | None:
        if self.done is None or not self.total:
            return None
        return max(0.0, min(1.0, self.done / self.total))


ProgressSink = Callable[[Progress], None]


def counted(items: Iterable[T], report: Callable[[int], None], every: int = 1000) -> Iterator[T]:
    """`items` unchanged; `report(n)` after every `every` items and once at the end."""
    n = 0
    for item in items:
        yield item
        n += 1
        if n % every == 0:
            report(n)
    report(n)
