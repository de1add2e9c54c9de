"""Pruning old state rows (run by the reaper each sweep): the state database stays bounded.

Older than `state.history_retention_days` (default 90) and finished, and only then:
- journal rows of finished plans (done, abandoned, failed), never a purge row that is not yet `deleted` or
  `skipped` (expiration's phase 1 hands those to purge; they are the only record of what purge still owes),
  and never a row touched within the retention;
- finished plans with no journal row left (so never an open plan, nor anything an open plan owns);
- finished job runs (done, failed, stopped);
- partition-health rows with nothing to remember (no failure, no quarantine, no attempt in flight).
Each DELETE takes at most `batch` rows in its own statement; a sweep stops after `max_batches` per kind, so a
large backlog drains over several sweeps without holding long locks or memory (the rows never leave the
database).
"""

from __future__ import annotations

from datetime import timedelta

from lifecycle import log, metrics
from lifecycle.settings import Settings
from lifecycle.state.store import StateStore

_log = log.get("lifecycle.state.prune")
BATCH = 5000
MAX_BATCHES = 20

_FINISHED_PLAN = "('done', 'abandoned', 'failed')"
_STEPS = (
    ("journal",
     "DELETE FROM journal WHERE entry_id IN (SELECT j.entry_id FROM plans p JOIN journal j ON j.plan_id = p.plan_id"
     f" WHERE p.state IN {_FINISHED_PLAN} AND p.updated_at < %(cutoff)s AND j.updated_at < %(cutoff)s"
     " AND NOT (j.kind = 'purge' AND j.state NOT IN ('deleted', 'skipped')) LIMIT %(batch)s)"),
    ("plans",
     "DELETE FROM plans WHERE plan_id IN (SELECT p.plan_id FROM plans p"
     f" WHERE p.state IN {_FINISHED_PLAN} AND p.updated_at < %(cutoff)s"
     " AND NOT EXISTS (SELECT 1 FROM journal j WHERE j.plan_id = p.plan_id) LIMIT %(batch)s)"),
    ("job_runs",
     "DELETE FROM job_runs WHERE run_id IN (SELECT run_id FROM job_runs WHERE state IN ('done', 'failed', 'stopped')"
     " AND finished_at < %(cutoff)s LIMIT %(batch)s)"),
    ("partition_health",
     "DELETE FROM partition_health WHERE (job, table_name, partition) IN (SELECT job, table_name, partition"
     " FROM partition_health WHERE failures = 0 AND quarantined_at IS NULL AND attempt_run IS NULL"
     " AND updated_at < %(cutoff)s LIMIT %(batch)s)"),
)


def prune(store: StateStore, settings: Settings, batch: int = BATCH, max_batches: int = MAX_BATCHES) -> dict[str, int]:
    """Delete old finished state rows; returns the rows deleted per kind."""
    cutoff = store.clock.now() - timedelta(days=settings.state.history_retention_days)
    out: dict[str, int] = {}
    for kind, sql in _STEPS:
        total = 0
        for _ in range(max_batches):
            with store.cursor() as cur:
                cur.execute(sql, {"cutoff": cutoff, "batch": batch})
                deleted = cur.rowcount
            total += deleted
            if deleted < batch:
                break
        out[kind] = total
        if total:
            metrics.STATE_ROWS_PRUNED.labels(kind).inc(total)
    if any(out.values()):
        _log.event("state.pruned", cutoff=cutoff.isoformat(), **out)
    return out
