"""Advisory locks: pg_try_advisory_lock(key) with a 64-bit key, on a dedicated autocommit connection.

A crashed holder's session ends and PostgreSQL frees the lock. Keys come from blake2b (8 bytes over our
namespace, the lock kind, the table and the canonical partition text), never hash(): with 64 bits a false
"locked" between two of a million partitions has a chance of about 3e-8 (32-bit keys: about 1 in 9 already at
30,000 partitions). PostgreSQL shows a one-argument bigint lock in pg_locks as classid = high 32 bits,
objid = low 32 bits, objsubid = 1.
"""

from __future__ import annotations

import hashlib
from types import TracebackType
from typing import Any

import psycopg

from lifecycle.errors import LockLostError
from lifecycle.state.db import connect

NAMESPACE = "artemis-lifecycle"
APPLICATION_PREFIX = "lifecycle-lock:"

def lock_key(kind: str, table: str, partition: str = "") -> int:
    """The signed 64-bit advisory-lock key of (kind, table, partition)."""
    digest = hashlib.blake2b(f"{NAMESPACE}\x1f{kind}\x1f{table}\x1f{partition}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


class AdvisoryLock:
    """`with AdvisoryLock(url, kind, table, partition) as lock: if lock.acquired: ...`"""

    def __init__(self, url: str, kind: str, table: str, partition: str = "") -> None:
        self.url = url
        self.kind = kind
        self.table = table
        self.partition = partition
        self.key = lock_key(kind, table, partition)
        self.acquired = False
        self._conn: psycopg.Connection[Any] | None = None

    def __enter__(self) -> AdvisoryLock:
        if not self.try_acquire():
            self.release()
        return self

    def try_acquire(self) -> bool:
        """Try (again) to take the lock; a connection that did not get it stays open for the next try."""
        if self.acquired:
            return True
        if self._conn is None or self._conn.closed:
            name = f"{APPLICATION_PREFIX}{self.kind}:{self.table}:{self.partition}"[:63]   # PostgreSQL's limit
            self._conn = connect(self.url, application_name=name)
        row = self._conn.execute("SELECT pg_try_advisory_lock(%s::bigint)", (self.key,)).fetchone()
        self.acquired = bool(row and row[0])
        return self.acquired

    def alive(self) -> bool:
        """True while the lock's connection still answers (so the lock is still ours)."""
        if not self.acquired or self._conn is None or self._conn.closed:
            return False
        try:
            self._conn.execute("SELECT 1").fetchone()
            return True
        except psycopg.Error:
            return False

    def ensure_alive(self) -> None:
        """Raise LockLostError when the lock connection died: stop before any further side effect."""
        if not self.alive():
            raise LockLostError(
                f"advisory lock for {self.kind} {self.table} {self.partition or ''}".rstrip()
                + " was lost (state database connection dropped); stopping before any further step"
            )

    def release(self) -> None:
        conn, self._conn = self._conn, None
        if conn is None:
            return
        try:
            if self.acquired and not conn.closed:
                conn.execute("SELECT pg_advisory_unlock(%s::bigint)", (self.key,))
        except psycopg.Error:
            pass  # the session is gone: PostgreSQL already freed the lock
        finally:
            conn.close()
            self.acquired = False

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.release()


def held_locks(conn: psycopg.Connection[Any]) -> list[dict[str, Any]]:
    """Our advisory locks currently held in the cluster (64-bit keys, as `lock_key` makes them), with the
    holding application name."""
    rows = conn.execute(
        "SELECT (l.classid::bigint << 32) | l.objid::bigint AS key, a.application_name, a.client_addr::text,"
        " a.backend_start FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid"
        " WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 1 AND l.database = ("
        " SELECT oid FROM pg_database WHERE datname = current_database())"
        " AND starts_with(a.application_name, %s)",
        (APPLICATION_PREFIX,),
    ).fetchall()
    return [
        {"key": r[0], "holder": r[1], "client": r[2], "since": r[3].isoformat() if r[3] else None}
        for r in rows
    ]
