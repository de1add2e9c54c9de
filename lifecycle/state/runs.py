"""Job runs: one row per execution of a job on a table (and partition), with attempts and a heartbeat."""

from __future__ import annotations

import hashlib
from datetime import datetime
from enum import StrEnum
from typing import Any

from psycopg.types.json import Jsonb

from lifecycle.errors import StaleStateError
from lifecycle.log import mask
from lifecycle.state.models import JobRun
from lifecycle.state.store import StateStore


class RunState(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"
    STOPPED = "stopped"


QUEUED, RUNNING, DONE, FAILED, STOPPED = (RunState.QUEUED, RunState.RUNNING, RunState.DONE, RunState.FAILED,
                                          RunState.STOPPED)
_COLS = ("run_id, job, table_name, partition, state, manual, attempts, max_attempts, worker, created_at,"
         " heartbeat_at, finished_at, error, counts, requeued_at, requeues")


def run_id_for(job: str, table: str, partition: str, token: str) -> str:
    """Deterministic id: the same (job, table, partition, token) always names the same run."""
    digest = hashlib.blake2b(f"{job}\x1f{table}\x1f{partition}\x1f{token}".encode(), digest_size=10)
    return f"{job}-{digest.hexdigest()}"


class RunStore:
    def __init__(self, store: StateStore) -> None:
        self.store = store

    def ensure(self, run_id: str, job: str, table: str, partition: str, manual: bool,
               max_attempts: int = 5) -> JobRun:
        with self.store.cursor() as cur:
            cur.execute(
                "INSERT INTO job_runs (run_id, job, table_name, partition, state, manual, max_attempts,"
                " created_at) VALUES (%s,%s,%s,%s,'queued',%s,%s,%s) ON CONFLICT (run_id) DO NOTHING",
                (run_id, job, table, partition, manual, max_attempts, self.store.clock.now()),
            )
        run = self.get(run_id)
        assert run is not None
        return run

    def get(self, run_id: str) -> JobRun | None:
        with self.store.cursor() as cur:
            cur.execute(f"SELECT {_COLS} FROM job_runs WHERE run_id = %s", (run_id,))
            row = cur.fetchone()
        return JobRun(**row) if row else None

    def start(self, run_id: str, worker: str) -> JobRun:
        """queued/running/stopped -> running, counting the attempt. Caller holds the run's advisory lock."""
        now = self.store.clock.now()
        with self.store.cursor() as cur:
            cur.execute(
                f"UPDATE job_runs SET state = 'running', attempts = attempts + 1, worker = %s,"
                f" started_at = %s, heartbeat_at = %s WHERE run_id = %s"
                f" AND state IN ('queued', 'running', 'stopped') RETURNING {_COLS}",
                (worker, now, now, run_id),
            )
            row = cur.fetchone()
        if row is None:
            raise StaleStateError(f"job run {run_id} is not startable")
        return JobRun(**row)

    def heartbeat(self, run_id: str) -> None:
        with self.store.cursor() as cur:
            cur.execute("UPDATE job_runs SET heartbeat_at = %s WHERE run_id = %s AND state = 'running'",
                        (self.store.clock.now(), run_id))

    def finish(self, run_id: str, state: str, counts: dict[str, Any] | None = None,
               error: str | None = None, expected: tuple[str, ...] = (RUNNING,)) -> None:
        with self.store.cursor() as cur:
            cur.execute(
                "UPDATE job_runs SET state = %s, finished_at = %s, counts = %s, error = %s"
                " WHERE run_id = %s AND state = ANY(%s)",
                (state, self.store.clock.now(), Jsonb(counts or {}), mask(error)[:2000] if error else None, run_id,
                 list(expected)),
            )
            if cur.rowcount != 1:
                raise StaleStateError(f"job run {run_id} was not {'/'.join(expected)}")

    def requeue(self, seen: JobRun) -> bool:
        """running/queued -> queued with `requeued_at` = now, only if the run is still exactly as `seen` (its
        state, heartbeat and last re-send): of two reapers that saw the same stale run, one wins."""
        with self.store.cursor() as cur:
            cur.execute(
                "UPDATE job_runs SET state = 'queued', requeued_at = %s, requeues = requeues + 1"
                " WHERE run_id = %s AND state = %s AND heartbeat_at IS NOT DISTINCT FROM %s"
                " AND requeued_at IS NOT DISTINCT FROM %s",
                (self.store.clock.now(), seen.run_id, seen.state, seen.heartbeat_at, seen.requeued_at),
            )
            return cur.rowcount == 1

    def recent(self, table: str | None = None, limit: int = 20) -> list[JobRun]:
        sql = f"SELECT {_COLS} FROM job_runs"
        args: list[Any] = []
        if table:
            sql += " WHERE table_name = %s"
            args.append(table)
        with self.store.cursor() as cur:
            cur.execute(sql + f" ORDER BY created_at DESC LIMIT {int(limit)}", args)
            return [JobRun(**r) for r in cur.fetchall()]

    def of_job(self, job: str, table: str) -> list[JobRun]:
        """Every run of one job on one table, by partition."""
        with self.store.cursor() as cur:
            cur.execute(f"SELECT {_COLS} FROM job_runs WHERE job = %s AND table_name = %s ORDER BY partition",
                        (job, table))
            return [JobRun(**r) for r in cur.fetchall()]

    def open_runs(self) -> list[JobRun]:
        with self.store.cursor() as cur:
            cur.execute(f"SELECT {_COLS} FROM job_runs WHERE state IN ('queued','running') ORDER BY created_at")
            return [JobRun(**r) for r in cur.fetchall()]

    def starting(self, job: str, table: str, fresh_since: datetime, exclude: str | None = None) -> int:
        """Partition runs of one job on one table that are running (heartbeat since `fresh_since`) but have
        no open plan in their partition yet: still planning or rewriting their first group. The batched
        committer lingers for them so that parallel partition tasks share one snapshot."""
        with self.store.cursor() as cur:
            cur.execute(
                "SELECT count(*) AS n FROM job_runs r WHERE r.job = %s AND r.table_name = %s"
                " AND r.state = 'running' AND r.partition <> '' AND r.heartbeat_at >= %s AND r.run_id <> %s"
                " AND NOT EXISTS (SELECT 1 FROM plans p WHERE p.job = r.job AND p.table_name = r.table_name"
                " AND p.partition = r.partition"
                " AND p.state IN ('planned', 'executing', 'ready', 'committing', 'committed', 'unknown'))",
                (job, table, fresh_since, exclude or ""),
            )
            row = cur.fetchone()
        return int(row["n"]) if row else 0
