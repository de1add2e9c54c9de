"""Bandwidth budget: every read and write is charged in bytes before it happens.

The interface is `Limiter.acquire(nbytes, direction)`. The in-process token bucket serves the embedded
default and manual runs without Redis; the fleet-wide bucket (Redis, shared by every worker) implements the
same. Every charged byte is counted in `lifecycle_bandwidth_bytes_total{direction}`: `read` (object store →
worker), `write` (worker → object store), `copy` (object store → cold tier), `unspecified` otherwise.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Protocol

from lifecycle import metrics
from lifecycle.settings import Settings

READ, WRITE, COPY, UNSPECIFIED = "read", "write", "copy", "unspecified"


class Limiter(Protocol):
    rate: float

    def acquire(self, nbytes: int, direction: str = UNSPECIFIED) -> float:
        """Block until nbytes may move; returns the seconds waited."""
        ...


class ReservingLimiter:
    """`acquire` over a `_reserve(nbytes) -> seconds to wait`: sleeps off the debt and counts the wait."""

    waited_seconds = 0.0

    def __init__(self, sleep: Callable[[float], None]) -> None:
        self._sleep = sleep
        self.waited_seconds = 0.0

    def _reserve(self, nbytes: int) -> float:
        raise NotImplementedError

    def acquire(self, nbytes: int, direction: str = UNSPECIFIED) -> float:
        if nbytes <= 0:
            return 0.0
        wait = self._reserve(nbytes)
        metrics.BANDWIDTH_BYTES.labels(direction).inc(nbytes)
        if wait > 0:
            self._sleep(wait)
            self.waited_seconds += wait
            metrics.BANDWIDTH_WAIT.inc(wait)
        return wait


class TokenBucket(ReservingLimiter):
    """A thread-safe token bucket in bytes. Burst defaults to one second of budget."""

    def __init__(
        self, rate: float, burst: float | None = None,
        monotonic: Callable[[], float] = time.monotonic, sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if rate <= 0:
            raise ValueError("rate must be positive")
        super().__init__(sleep)
        self.rate = float(rate)
        self.burst = float(burst if burst is not None else rate)
        self._monotonic = monotonic
        self._tokens = self.burst
        self._last = monotonic()
        self._lock = threading.Lock()
        self.charged_bytes = 0

    def _reserve(self, nbytes: int) -> float:
        with self._lock:
            now = self._monotonic()
            self._tokens = min(self.burst, self._tokens + (now - self._last) * self.rate)
            self._last = now
            self._tokens -= nbytes  # may go negative: a debt the caller sleeps off
            self.charged_bytes += nbytes
            return 0.0 if self._tokens >= 0 else -self._tokens / self.rate


class Unlimited:
    rate = float("inf")

    def acquire(self, nbytes: int, direction: str = UNSPECIFIED) -> float:
        return 0.0


_process_bucket: TokenBucket | None = None
_process_lock = threading.Lock()


def process_limiter(settings: Settings) -> TokenBucket:
    """The one in-process bucket for this process, at object_store_bytes_per_second × lifecycle_share."""
    global _process_bucket
    with _process_lock:
        rate = settings.bandwidth.bytes_per_second
        if _process_bucket is None or _process_bucket.rate != rate:
            _process_bucket = TokenBucket(rate)
        metrics.BANDWIDTH_BUDGET.set(rate)
        return _process_bucket
