"""Writer heartbeats: the active-writer set, and a helper Python writers use to keep their row fresh."""

from __future__ import annotations

import socket
import threading
import uuid
from collections.abc import Sequence
from datetime import timedelta
from types import TracebackType
from typing import Any

from lifecycle.clock import Clock, SystemClock
from lifecycle.state.db import connect
from lifecycle.state.models import Writer

_COLS = "writer_id, host, started_at, last_heartbeat_at, in_progress_paths"


def _writer(row: Sequence[Any]) -> Writer:
    return Writer(row[0], row[1], row[2], row[3], tuple(row[4] or ()))


def all_writers(conn: Any) -> list[Writer]:
    return [_writer(r) for r in conn.execute(f"SELECT {_COLS} FROM writer_heartbeats ORDER BY writer_id")]


def active_writers(conn: Any, clock: Clock, ttl_seconds: int, skew_seconds: int = 0) -> list[Writer]:
    """Writers whose last heartbeat is younger than the TTL plus the clock-skew margin, by the injectable clock.

    A heartbeat is stamped by the writer's own clock and judged by ours: the margin (`[fleet]
    max_clock_skew_seconds`) keeps a writer whose clock runs up to that far behind protected; a writer that
    stopped is protected that much longer, which only delays an orphan's deletion."""
    cutoff = clock.now() - timedelta(seconds=ttl_seconds + skew_seconds)
    return [w for w in all_writers(conn) if w.last_heartbeat_at is not None and w.last_heartbeat_at > cutoff]


class WriterHeartbeat:
    """Keeps one `writer_heartbeats` row fresh from a background thread; removes it on exit.

        with WriterHeartbeat(url, paths=["s3://bucket/table/data/"]) as hb:
            hb.set_paths([...])   # what this writer is writing now
            ... commit ...
    """

    def __init__(
        self, url: str, writer_id: str | None = None, interval_seconds: float = 30.0,
        paths: Sequence[str] = (), clock: Clock | None = None, host: str | None = None,
    ) -> None:
        self.url = url
        self.writer_id = writer_id or f"{socket.gethostname()}-{uuid.uuid4().hex[:8]}"
        self.interval = interval_seconds
        self.clock = clock or SystemClock()
        self.host = host or socket.gethostname()
        self._paths = list(paths)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._conn_lock = threading.Lock()
        self._conn: Any = None
        self.beats = 0

    def __enter__(self) -> WriterHeartbeat:
        self._conn = connect(self.url, application_name=f"lifecycle-writer:{self.writer_id}")
        now = self.clock.now()
        with self._conn_lock:
            self._conn.execute(
                f"INSERT INTO writer_heartbeats ({_COLS}) VALUES (%s,%s,%s,%s,%s)"
                " ON CONFLICT (writer_id) DO UPDATE SET host = EXCLUDED.host,"
                " started_at = EXCLUDED.started_at, last_heartbeat_at = EXCLUDED.last_heartbeat_at,"
                " in_progress_paths = EXCLUDED.in_progress_paths",
                (self.writer_id, self.host, now, now, self._paths),
            )
        self._thread = threading.Thread(target=self._run, name=f"heartbeat-{self.writer_id}", daemon=True)
        self._thread.start()
        return self

    def beat(self) -> None:
        """Refresh the row now (also called by the background thread every interval)."""
        with self._conn_lock:
            self._conn.execute(
                "UPDATE writer_heartbeats SET last_heartbeat_at = %s, in_progress_paths = %s"
                " WHERE writer_id = %s",
                (self.clock.now(), list(self._paths), self.writer_id),
            )
            self.beats += 1

    def set_paths(self, paths: Sequence[str]) -> None:
        self._paths = list(paths)
        self.beat()

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self.beat()
            except Exception:
                continue

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
        try:
            with self._conn_lock:
                self._conn.execute("DELETE FROM writer_heartbeats WHERE writer_id = %s", (self.writer_id,))
        finally:
            self._conn.close()
