"""Worker and beat lifecycle hooks: JSON logs, metrics endpoint, liveness heartbeat file, beat schedule.

- `before_task_publish` (any sender): job messages carry the table and partition Flower's task list
  shows (workers/flower_defaults.py).
- `after_setup_logger` (worker, beat): Celery's handlers write one JSON object a line (secrets masked), and
  our loggers log through them at LIFECYCLE_LOG_LEVEL (default INFO; DEBUG with `-l DEBUG`).

- (workers/app.py, worker main process, before any metric is made and the pool forks):
  PROMETHEUS_MULTIPROC_DIR is set (default: a private new folder under the temp folder) and emptied; see
  workers/metrics_dir.py.
- `worker_ready`: the main process serves `/metrics` on `fleet.metrics_port` (LIFECYCLE_METRICS_PORT overrides it),
  aggregating every child; a thread touches LIFECYCLE_HEARTBEAT_FILE every ~15 s for the liveness probe.
- `worker_shutting_down` (main) touches a marker file that every child watches (`worker_process_init`):
  running jobs stop cleanly at their next checkpoint and the message is requeued for another worker.
- `worker_process_shutdown`: a child's live gauges are dropped.
- `install_beat_schedule` (a `celery beat` process): the schedule from the settings and the catalog's
  tables (beat_schedule.py).
"""

from __future__ import annotations

import logging
import os
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from celery import signals

from lifecycle import log
from workers import flower_defaults
from workers.metrics_dir import multiproc_dir

_log = log.get("workers.signals")
DEFAULT_HEARTBEAT_FILE = "/tmp/lifecycle-worker-heartbeat"
HEARTBEAT_SECONDS = 15.0


def metrics_port() -> int:
    from workers.app import settings

    return settings.fleet.metrics_port


def serve_metrics(port: int) -> Any:
    from prometheus_client import CollectorRegistry, start_http_server
    from prometheus_client.multiprocess import MultiProcessCollector

    registry = CollectorRegistry()
    MultiProcessCollector(registry)  # type: ignore[no-untyped-call]  # prometheus_client is untyped
    return start_http_server(port, addr=os.environ.get("LIFECYCLE_METRICS_ADDR", "0.0.0.0"), registry=registry)


def _touch_forever(path: Path, every: float, stop: threading.Event) -> None:
    while True:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.touch()
        except OSError as exc:
            _log.warning("worker.heartbeat_failed", path=str(path), error=str(exc))
        if stop.wait(every):
            return


_stop = threading.Event()


def shutdown_marker() -> Path:
    """Created by the worker's main process when a warm shutdown begins; its children watch for it.

    Default: inside the worker's private metrics folder (workers/metrics_dir.py; prometheus-client reads
    only `*.db` there), never at a predictable name in the shared temp folder where a planted symlink
    would redirect the touch."""
    path = os.environ.get("LIFECYCLE_SHUTDOWN_FILE")
    if not path:
        folder = multiproc_dir() or Path(tempfile.mkdtemp(prefix="lifecycle-shutdown-"))
        path = str(folder / ".shutdown")
        os.environ["LIFECYCLE_SHUTDOWN_FILE"] = path  # inherited by the prefork children
    return Path(path)


def watch_shutdown(marker: Path, event: threading.Event, every: float = 1.0) -> threading.Thread:
    """Set `event` (the jobs' JobContext.shutdown) once `marker` exists: running jobs then stop cleanly at
    their next checkpoint instead of running into the pod's grace period."""

    def loop() -> None:
        while not event.is_set():
            if marker.exists():
                event.set()
                return
            time.sleep(every)

    thread = threading.Thread(target=loop, name="shutdown-watch", daemon=True)
    thread.start()
    return thread


def _worker_init(**_: Any) -> None:
    shutdown_marker().unlink(missing_ok=True)


def _worker_shutting_down(**_: Any) -> None:
    try:
        shutdown_marker().touch()
    except OSError as exc:
        _log.warning("worker.shutdown_marker_failed", error=str(exc))


def _child_init(**_: Any) -> None:
    from lifecycle import metrics
    from lifecycle.fleet import priority
    from lifecycle.jobs import admission
    from lifecycle.jobs.base import JOB_NAMES
    from workers import tasks

    metrics.touch_job_series(JOB_NAMES, admission.REASONS)

    # the children run the jobs: they yield CPU and IO to analysts' queries (LIFECYCLE_NICE, default 10);
    # the main process keeps its priority, so broker heartbeats and /metrics stay responsive
    _log.event("worker.priority", applied=priority.from_environment())
    watch_shutdown(shutdown_marker(), tasks.SHUTDOWN)


def _worker_ready(**_: Any) -> None:
    folder = multiproc_dir()
    port = metrics_port()
    if folder is None:  # not started as `celery ... worker`: the children's samples cannot be summed
        _log.warning("worker.metrics_unavailable", port=port, error="PROMETHEUS_MULTIPROC_DIR is not set")
    else:
        try:
            serve_metrics(port)
            _log.event("worker.metrics", port=port, path="/metrics", folder=str(folder))
        except OSError as exc:
            _log.warning("worker.metrics_unavailable", port=port, error=str(exc))
    path = Path(os.environ.get("LIFECYCLE_HEARTBEAT_FILE", DEFAULT_HEARTBEAT_FILE))
    every = float(os.environ.get("LIFECYCLE_HEARTBEAT_SECONDS", HEARTBEAT_SECONDS))
    threading.Thread(target=_touch_forever, args=(path, every, _stop), name="liveness-heartbeat",
                     daemon=True).start()


def _worker_shutdown(**_: Any) -> None:
    _stop.set()


def _child_exit(pid: int | None = None, **_: Any) -> None:
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(pid or os.getpid())  # type: ignore[no-untyped-call]  # untyped library


def worker_log_level(celery_level: int | str | None, env: dict[str, str] | None = None) -> str:
    """LIFECYCLE_LOG_LEVEL, else INFO (the jobs' start/finish events), or DEBUG when Celery runs at DEBUG."""
    raw = (os.environ if env is None else env).get("LIFECYCLE_LOG_LEVEL")
    if raw:
        return log.check_level(raw)
    level = logging.getLevelName(celery_level) if isinstance(celery_level, int) else str(celery_level or "")
    return "DEBUG" if level.upper() == "DEBUG" else "INFO"


def _setup_logger(logger: logging.Logger | None = None, loglevel: int | str | None = None, **_: Any) -> None:
    if logger is not None:
        log.configure_under(list(logger.handlers), worker_log_level(loglevel))


def install_beat_schedule(app: Any, settings: Any) -> None:
    """Called by workers/app.py in a `celery beat` process, before the scheduler reads the schedule, so
    both schedulers merge it keeping each entry's last run (redbeat in Redis, the local one in its file)."""
    from beat_schedule import beat_tables, build_schedule

    tables = beat_tables(settings)
    app.conf.beat_schedule = build_schedule(settings, tables)
    _log.event("beat.schedule", tables=tables, entries=sorted(app.conf.beat_schedule))


signals.before_task_publish.connect(flower_defaults.label_message, weak=False)
signals.after_setup_logger.connect(_setup_logger, weak=False)
signals.after_setup_task_logger.connect(_setup_logger, weak=False)
signals.worker_init.connect(_worker_init, weak=False)
signals.worker_shutting_down.connect(_worker_shutting_down, weak=False)
signals.worker_process_init.connect(_child_init, weak=False)
signals.worker_ready.connect(_worker_ready, weak=False)
signals.worker_shutdown.connect(_worker_shutdown, weak=False)
signals.worker_process_shutdown.connect(_child_exit, weak=False)
