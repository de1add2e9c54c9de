"""Poison partitions: attempts counted per (job, table, partition) across messages, and the quarantine.

Every run marks its attempt in flight when it starts (under its advisory lock) and clears the mark when it
ends. A mark still set at the next start belongs to an attempt whose worker died (the lock was free), so it
counts as a failure, like an attempt that raised. A success resets the count. When `failures` reaches
`fleet.quarantine_after_failures` the key is quarantined: fan-out skips it and the workers refuse its
messages until an operator releases it (`lifecycle-cli quarantine release`) or `fleet.quarantine_cool_off_hours`
pass; then one more attempt is let through, and a failure quarantines it again at once.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from lifecycle import metrics
from lifecycle.log import mask
from lifecycle.settings import Settings
from lifecycle.state.store import StateStore

_COLS = "job, table_name, partition, failures, last_error, last_failure_at, quarantined_at"
_KEY = "job = %s AND table_name = %s AND partition = %s"


@dataclass(frozen=True)
class Health:
    job: str
    table_name: str
    partition: str
    failures: int
    last_error: str | None
    last_failure_at: datetime | None
    quarantined_at: datetime | None


class Quarantine:
    def __init__(self, store: StateStore, threshold: int, cool_off: timedelta) -> None:
        self.store, self.threshold, self.cool_off = store, threshold, cool_off

    @staticmethod
    def of(store: StateStore, settings: Settings) -> Quarantine:
        return Quarantine(store, settings.fleet.quarantine_after_failures,
                          timedelta(hours=settings.fleet.quarantine_cool_off_hours))

    def begin(self, job: str, table: str, partition: str, run_id: str) -> Health | None:
        """An attempt starts (the caller holds its lock): a mark left by a dead attempt counts as a failure.
        Returns the health row when that made the key quarantined: the attempt must not go on."""
        now = self.store.clock.now()
        with self.store.transaction() as cur:
            cur.execute(
                "INSERT INTO partition_health (job, table_name, partition, attempt_run, attempt_at, updated_at)"
                " VALUES (%s, %s, %s, %s, %s, %s) ON CONFLICT (job, table_name, partition) DO UPDATE SET"
                " failures = partition_health.failures + (partition_health.attempt_run IS NOT NULL)::int,"
                " last_error = CASE WHEN partition_health.attempt_run IS NOT NULL THEN 'attempt of run '"
                "   || partition_health.attempt_run || ' died (worker lost)' ELSE partition_health.last_error END,"
                " last_failure_at = CASE WHEN partition_health.attempt_run IS NOT NULL THEN EXCLUDED.updated_at"
                "   ELSE partition_health.last_failure_at END,"
                " attempt_run = EXCLUDED.attempt_run, attempt_at = EXCLUDED.attempt_at,"
                " updated_at = EXCLUDED.updated_at",
                (job, table, partition, run_id, now, now),
            )
            self._maybe_quarantine(cur, job, table, partition, now)
        return self.blocked(job, table, partition)

    def end(self, job: str, table: str, partition: str, run_id: str, ok: bool | None,
            error: str | None = None) -> None:
        """The attempt ended: ok (the count resets and any quarantine lifts), failed (counted), or None
        (stopped cleanly at a checkpoint: not a failure)."""
        now = self.store.clock.now()
        with self.store.transaction() as cur:
            if ok is None:
                cur.execute(f"UPDATE partition_health SET attempt_run = NULL, updated_at = %s WHERE {_KEY}"
                            " AND attempt_run = %s", (now, job, table, partition, run_id))
            elif ok:
                cur.execute(f"UPDATE partition_health SET attempt_run = NULL, failures = 0, quarantined_at = NULL,"
                            f" updated_at = %s WHERE {_KEY}", (now, job, table, partition))
            else:
                cur.execute(f"UPDATE partition_health SET attempt_run = NULL, failures = failures + 1,"
                            f" last_error = %s, last_failure_at = %s, updated_at = %s WHERE {_KEY}",
                            (mask(error or "failed")[:2000], now, now, job, table, partition))
                self._maybe_quarantine(cur, job, table, partition, now)

    def _maybe_quarantine(self, cur: Any, job: str, table: str, partition: str, now: datetime) -> None:
        """At or over the threshold after a failure: quarantined from now (again, after a cool-off probe)."""
        cur.execute(f"UPDATE partition_health SET quarantined_at = %s, released_by = NULL WHERE {_KEY}"
                    " AND failures >= %s AND (quarantined_at IS NULL OR quarantined_at <= %s)"
                    " AND last_failure_at = %s",
                    (now, job, table, partition, self.threshold, now - self.cool_off, now))
        if cur.rowcount:
            metrics.QUARANTINES.labels(job).inc()

    def blocked(self, job: str, table: str, partition: str) -> Health | None:
        """The key's health row when it is quarantined now (inside its cool-off), else None."""
        rows = self.quarantined(job, table, partition)
        return rows[0] if rows else None

    def quarantined(self, job: str | None = None, table: str | None = None,
                    partition: str | None = None) -> list[Health]:
        sql = f"SELECT {_COLS} FROM partition_health WHERE quarantined_at > %s"
        args: list[Any] = [self.store.clock.now() - self.cool_off]
        for col, val in (("job", job), ("table_name", table), ("partition", partition)):
            if val is not None:
                sql += f" AND {col} = %s"
                args.append(val)
        with self.store.cursor() as cur:
            cur.execute(sql + " ORDER BY job, table_name, partition", args)
            return [Health(**r) for r in cur.fetchall()]

    def release(self, job: str, table: str, partition: str, by: str) -> bool:
        """An operator lifts the quarantine and resets the count; False when the key was not quarantined."""
        with self.store.cursor() as cur:
            cur.execute(f"UPDATE partition_health SET quarantined_at = NULL, failures = 0, released_by = %s,"
                        f" updated_at = %s WHERE {_KEY} AND quarantined_at IS NOT NULL",
                        (by, self.store.clock.now(), job, table, partition))
            return bool(cur.rowcount)

    def observe(self, jobs: tuple[str, ...]) -> dict[str, int]:
        """Set lifecycle_quarantined_partitions{job} for every job (0 included); returns the counts."""
        counts = dict.fromkeys(jobs, 0)
        for h in self.quarantined():
            counts[h.job] = counts.get(h.job, 0) + 1
        for job, n in counts.items():
            metrics.QUARANTINED.labels(job).set(n)
        return counts


def quarantined_partitions(store: StateStore, job: str, table: str, settings: Settings) -> set[str]:
    """The partitions of a table the fan-out must skip for `job`."""
    return {h.partition for h in Quarantine.of(store, settings).quarantined(job, table)}
