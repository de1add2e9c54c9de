"""Prometheus metrics. The four contract names carry a `table` label.

In a Celery fleet PROMETHEUS_MULTIPROC_DIR is set before the pool forks (workers/metrics_dir.py) and the
worker's main process serves the sum of every prefork child; here we only define the metrics (the default
registry), never serve them. `multiprocess_values()` runs before the first metric is made, so the folder is
used even when prometheus-client was imported before the variable was set.
"""

from __future__ import annotations

import os
from collections.abc import Iterable

from prometheus_client import Counter, Gauge, Histogram, values

from lifecycle import log


def multiprocess_values(env: dict[str, str] | None = None) -> bool:
    """Make prometheus-client's value class agree with PROMETHEUS_MULTIPROC_DIR now; True if multiprocess.

    prometheus-client chooses it once, at its own first import. The `celery` command imports it early (via
    Flower's command plug-in), before workers/app.py sets the variable: the pool children then kept their
    samples in memory and the worker served nothing. A folder that does not exist yet is created; one that
    cannot be made leaves this process's metrics in memory (a CLI run still works).
    """
    folder = (os.environ if env is None else env).get("PROMETHEUS_MULTIPROC_DIR")
    if folder:
        try:
            os.makedirs(folder, mode=0o700, exist_ok=True)
        except OSError as exc:
            log.get("lifecycle.metrics").warning("metrics.multiproc_dir_unusable", path=folder, error=str(exc))
            folder = ""
    if folder:
        if values.ValueClass is values.MutexValue:
            values.ValueClass = values.MultiProcessValue()  # type: ignore[no-untyped-call]  # prometheus_client is untyped
        return True
    values.ValueClass = values.MutexValue
    return False


MULTIPROCESS = multiprocess_values()

FILES_COMPACTED = Counter("files_compacted", "Input data files replaced by compaction", ["table"])
SNAPSHOTS_EXPIRED = Counter("snapshots_expired", "Snapshots removed by expiration phase 1", ["table"])
ORPHANS_CLEANED = Counter("orphans_cleaned", "Orphan files deleted", ["table"])
LINEAGE_FAILURES = Counter(
    "lineage_validation_failures", "Commits refused for missing lineage fields", ["table"]
)

BYTES_REWRITTEN = Counter("lifecycle_bytes_rewritten", "Bytes written by compaction", ["table"])
ORPHAN_BYTES = Counter("lifecycle_orphan_bytes_reclaimed", "Bytes reclaimed by orphan cleanup", ["table"])
ORPHANS_KEPT = Counter("lifecycle_orphan_files_kept", "Unreachable files kept by a guard", ["table", "guard"])
COLD_FILES = Counter("lifecycle_cold_tier_files_copied", "Files copied to the cold tier", ["table"])
COLD_BYTES = Counter("lifecycle_cold_tier_bytes_copied", "Bytes copied to the cold tier", ["table"])
FILES_PURGED = Counter("lifecycle_files_purged", "Files deleted by purge (phase 2)", ["table"])
MANIFESTS_REWRITTEN = Counter("lifecycle_manifests_rewritten", "Manifests replaced", ["table"])
METADATA_REMOVED = Counter(
    "lifecycle_metadata_items_removed", "Schemas, specs, sort orders and metadata files removed", ["table", "kind"]
)

JOB_RUNS = Counter("lifecycle_job_runs", "Job runs by outcome", ["job", "table", "outcome"])
JOB_DURATION = Histogram(
    "lifecycle_job_duration_seconds", "Job run duration", ["job"],
    buckets=(0.5, 1, 5, 15, 60, 300, 900, 1800, 3600, 7200),
)
PLAN_DURATION = Histogram("lifecycle_plan_duration_seconds", "Planning duration", ["job"])
COMMIT_DURATION = Histogram("lifecycle_commit_duration_seconds", "Commit duration", ["job"])
COMMIT_RETRIES = Counter("lifecycle_commit_retries", "Commit attempts retried after losing a race", ["job"])
COMPACTION_GROUPS = Counter("lifecycle_compaction_groups", "Compaction file groups by outcome (committed, abandoned)",
                            ["table", "outcome"])
COMPACTION_COMMITS = Counter("lifecycle_compaction_commits", "Replace snapshots committed by compaction", ["table"])
BANDWIDTH_BYTES = Counter("lifecycle_bandwidth_bytes", "Bytes charged to the bandwidth budget", ["direction"])
BANDWIDTH_WAIT = Counter("lifecycle_bandwidth_wait_seconds", "Seconds spent waiting for bandwidth budget")
BANDWIDTH_BUDGET = Gauge(
    "lifecycle_bandwidth_budget_bytes_per_second", "The fleet's byte budget", multiprocess_mode="max"
)
LOCK_CONTENTION = Counter("lifecycle_lock_contention", "Deliveries that found the lock held", ["job"])
JOB_FAILED_FINAL = Counter("lifecycle_job_attempts_exhausted", "Runs that ended failed after capped attempts", ["job"])

# Backlog gauges and the beat heartbeat, read by deploy/prometheus/alerts.yaml. Whoever computes them sets
# them (per table); "mostrecent" keeps the latest value written by any process in a multiprocess fleet.
SMALL_FILE_BACKLOG = Gauge(
    "lifecycle_small_file_backlog_files",
    "Data files below small_file_bytes across the table's partitions, at the last compaction scan",
    ["table"], multiprocess_mode="mostrecent",
)
PURGE_OVERDUE_AGE = Gauge(
    "lifecycle_purge_journal_oldest_eligible_age_seconds",
    "Seconds since the oldest purge-journal entry not yet deleted or skipped became eligible (0: none)",
    ["table"], multiprocess_mode="mostrecent",
)
BEAT_EMISSIONS = Counter("lifecycle_beat_emissions", "Job messages emitted by celery beat", ["job"])



def touch_job_series(jobs: Iterable[str], reasons: Iterable[str] = ()) -> None:
    """Zero-valued series per job (and per refusal reason) of the counters and gauges that only move on trouble
    or on beat's messages, so the dashboard's panels and the alert rules see 0 rather than nothing on a
    healthy fleet."""
    for job in jobs:
        for metric in (LOCK_CONTENTION, JOB_FAILED_FINAL, BEAT_EMISSIONS, QUARANTINES, QUARANTINED):
            metric.labels(job)
    for reason in reasons:
        MESSAGES_REJECTED.labels(reason)


CONTRACT_NAMES = (
    "files_compacted_total",
    "snapshots_expired_total",
    "orphans_cleaned_total",
    "lineage_validation_failures_total",
)

# ---- fleet trust (request validation, poison partitions, the reaper) ---------------------------------------
# `reason` is one of lifecycle.jobs.admission.REASONS: never a label taken from a message.
MESSAGES_REJECTED = Counter(
    "lifecycle_messages_rejected", "Fleet messages refused by request validation (acknowledged, nothing run)",
    ["reason"],
)
QUARANTINED = Gauge(
    "lifecycle_quarantined_partitions", "(job, table, partition) keys quarantined after repeated failures",
    ["job"], multiprocess_mode="mostrecent",
)
QUARANTINES = Counter("lifecycle_quarantines", "Times a (job, table, partition) key was quarantined", ["job"])
STATE_ROWS_PRUNED = Counter("lifecycle_state_rows_pruned", "State rows pruned by the reaper", ["kind"])
