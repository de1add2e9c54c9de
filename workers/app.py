"""The Celery app of the fleet: `celery -A workers.app worker -Q compaction`, `... beat`, `... flower`.

Configuration comes from the lifecycle settings (`LIFECYCLE_CONFIG`, env overrides); see workers/config.py.
In a worker, PROMETHEUS_MULTIPROC_DIR is settled here, before lifecycle/metrics.py makes any metric (nothing
imported above imports it) and before the pool forks (workers/metrics_dir.py); the `celery` command itself
has already imported prometheus-client by then, which lifecycle/metrics.py corrects for.
"""

from __future__ import annotations

import sys
from pathlib import Path

from celery import Celery

from lifecycle.settings import load
from workers.config import celery_config
from workers.metrics_dir import prepare_multiproc_dir

# `celery ...` or `python -m celery ...` (not lifecycle-cli, which imports this app to send messages)
_celery = Path(sys.argv[0]).name == "celery" or "celery" in Path(sys.argv[0]).parent.parts[-1:]
if _celery and "worker" in sys.argv[1:]:  # `celery -A workers.app worker`
    prepare_multiproc_dir()
if _celery and "flower" in sys.argv[1:]:  # `celery -A workers.app flower`: read-only, table/partition shown
    from workers import flower_defaults

    flower_defaults.apply()

settings = load()
app = Celery("lifecycle", include=["workers.tasks"])
app.conf.update(celery_config(settings))

from workers import redbeat_codec, signals  # noqa: E402,F401  (connect the signal handlers; extend redbeat)

if "beat" in sys.argv[1:]:  # `celery -A workers.app beat`: the schedule before the scheduler reads it
    signals.install_beat_schedule(app, settings)
