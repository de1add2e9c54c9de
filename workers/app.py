"""The Celery app of the fleet: `celery -A workers.app worker -Q compaction`, `... beat`, `... flower`.

Configuration comes from the lifecycle settings (`LIFECYCLE_CONFIG`, env overrides); see workers/config.py.
In a worker, PROMETHEUS_MULTIPROC_DIR is settled first, before lifecycle/metrics.py makes any metric and
before the pool forks (workers/metrics_dir.py); the `celery` command itself has already imported
prometheus-client by then, which lifecycle/metrics.py corrects for.
"""

from __future__ import annotations

import sys

from workers.metrics_dir import prepare_multiproc_dir

if "worker" in sys.argv[1:]:  # `celery -A workers.app worker`
    prepare_multiproc_dir()
if "flower" in sys.argv[1:]:  # `celery -A workers.app flower`: read-only, job/table/partition in the list
    from workers import flower_defaults

    flower_defaults.apply()

from celery import Celery

from lifecycle.settings import load
from workers.config import celery_config

settings = load()
app = Celery("lifecycle", include=["workers.tasks"])
app.conf.update(celery_config(settings))

from workers import redbeat_codec, signals  # noqa: E402,F401  (connect the signal handlers; extend redbeat)

if "beat" in sys.argv[1:]:  # `celery -A workers.app beat`: the schedule before the scheduler reads it
    signals.install_beat_schedule(app, settings)
