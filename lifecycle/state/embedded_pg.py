"""The embedded default's PostgreSQL (pgserver, under `<data_dir>/pg`): where it runs, and stopping it.

Any `lifecycle-cli` command on the embedded default starts it on demand and leaves it running for the next
one; `lifecycle-cli demo` stops it at exit (unless --keep-db) and `lifecycle-cli demo --stop` stops it.
Read from `postmaster.pid` (pid, socket folder); stopped with SIGINT, PostgreSQL's fast shutdown.
"""

from __future__ import annotations

import os
import signal
import time
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class EmbeddedServer:
    pgdata: Path
    pid: int | None        # the postmaster, when running
    socket_dir: str | None

    @property
    def running(self) -> bool:
        return self.pid is not None

    def describe(self) -> str:
        if self.pid is None:
            return f"embedded PostgreSQL (data {self.pgdata}): not running"
        return f"embedded PostgreSQL pid {self.pid}, data {self.pgdata}, socket in {self.socket_dir}"


def pgdata(data_dir: Path) -> Path:
    return (data_dir / "pg").resolve()


def _alive(pid: int, data: Path) -> bool:
    """The pid is running and is a postgres server on this data folder (not a recycled pid)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return True  # no /proc: trust postmaster.pid
    return any(part.endswith(b"postgres") for part in cmdline[:1]) and str(data).encode() in cmdline


def server(data_dir: Path) -> EmbeddedServer:
    data = pgdata(data_dir)
    try:
        lines = (data / "postmaster.pid").read_text().splitlines()
    except OSError:
        return EmbeddedServer(data, None, None)
    try:
        pid = int(lines[0])
    except (IndexError, ValueError):
        return EmbeddedServer(data, None, None)
    socket_dir = lines[4] if len(lines) > 4 and lines[4] else None
    return EmbeddedServer(data, pid if _alive(pid, data) else None, socket_dir)


def stop(data_dir: Path, timeout: float = 60.0) -> EmbeddedServer:
    """Stop the embedded server under data_dir if it runs; returns what was found (pid None: nothing ran)."""
    found = server(data_dir)
    if found.pid is None:
        return found
    try:
        os.kill(found.pid, signal.SIGINT)
    except ProcessLookupError:
        return found
    deadline = time.monotonic() + timeout
    while _alive(found.pid, found.pgdata):
        if time.monotonic() > deadline:
            raise TimeoutError(f"{found.describe()}: did not stop within {timeout:.0f} s")
        time.sleep(0.1)
    return found
