"""Celery configuration built from the lifecycle settings: broker, queues, routes, acks and time limits.

Queues (a contract the deployment relies on): `compaction`, `expiration` (expire + purge), `orphans`,
`metadata` (rewrite-manifests + compact-schema-history), `control` (planning/fan-out, reaper).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from lifecycle.jobs.specs import JOBS
from lifecycle.jobs.specs import QUEUES as QUEUES
from lifecycle.settings import Settings

# Task name of each job (readable in Flower) and its queue: derived from the job registry.
JOB_TASKS = {s.name: s.task for s in JOBS}
JOB_QUEUES = {s.name: s.queue for s in JOBS}
PLAN_COMPACTION_TASK = "lifecycle.plan-compaction"
REAP_TASK = "lifecycle.reap"

def time_limits(settings: Settings) -> tuple[float, float, float]:
    """(visibility timeout, soft limit, hard limit) from `[fleet]`: the broker redelivers an unacked message
    after the visibility timeout, so every task must finish (hard limit) well before it (validated by
    lifecycle/settings.py: soft < hard < visibility timeout)."""
    soft, hard, visibility = settings.fleet.task_limits()
    return visibility, soft, hard


def embedded_broker(settings: Settings) -> tuple[str, dict[str, Any]]:
    """The embedded default: kombu's filesystem transport under the data folder (no server to install)."""
    folder = settings.data_dir / "broker"
    for sub in ("queue", "processed", "control"):
        (folder / sub).mkdir(parents=True, exist_ok=True)
    return "filesystem://", {
        "data_folder_in": str(folder / "queue"),
        "data_folder_out": str(folder / "queue"),
        "processed_folder": str(folder / "processed"),
        "control_folder": str(folder / "control"),
        "store_processed": False,
    }


def is_redis(url: str) -> bool:
    return url.startswith(("redis://", "rediss://", "redis+socket://"))


def celery_config(settings: Settings, beat: bool | None = None) -> dict[str, Any]:
    """The Celery configuration. No key holds a secret that Celery's censor would show (`celery inspect conf`,
    Flower's worker config page): `broker_url` is the only credential-bearing key and Celery masks it; the
    redbeat keys, whose Redis URL Celery would print in clear, are set only in the `celery beat` process
    (`beat`, default: "beat" on the command line), which answers no remote-control command."""
    beat = "beat" in sys.argv[1:] if beat is None else beat
    visibility, soft, hard = time_limits(settings)
    broker = settings.fleet.broker_url
    embedded = not broker
    if embedded:
        broker, transport = embedded_broker(settings)
    else:
        transport = {"visibility_timeout": int(visibility)}
        if is_redis(broker) and visibility < 600:  # short timeouts (tests): restore unacked messages promptly
            transport.update({"unacked_restore_interval": 1, "unacked_restore_throttle": 1})
    from kombu import Queue

    conf: dict[str, Any] = {
        "broker_url": broker,
        "broker_transport_options": transport,
        "broker_connection_retry_on_startup": True,
        "task_queues": [Queue(q, routing_key=q) for q in QUEUES],
        "task_default_queue": "control",
        "task_routes": {
            **{name: {"queue": JOB_QUEUES[job]} for job, name in JOB_TASKS.items()},
            PLAN_COMPACTION_TASK: {"queue": "control"},
            REAP_TASK: {"queue": "control"},
        },
        "task_acks_late": True,
        "task_reject_on_worker_lost": True,
        "worker_prefetch_multiplier": 1,
        "task_soft_time_limit": soft,
        "task_time_limit": hard,
        "worker_cancel_long_running_tasks_on_connection_loss": True,
        # Flower shows every task from its receipt on (worker events); per-message "task-sent" events would
        # double every publish and put the 10,000-partition fan-out over its 10 s budget (bench/fanout.py).
        # Queued-but-unreceived work is visible as queue depth (`lifecycle-cli status`, KEDA, the dashboard).
        "task_send_sent_event": False,
        "worker_send_task_events": not embedded,
        "task_ignore_result": True,
        "result_backend": None,
        "result_expires": None,  # no results, so no `celery.backend_cleanup` entry in beat
        "timezone": "UTC",
        "enable_utc": True,
        "task_serializer": "json",
        "accept_content": ["json"],
        "worker_hijack_root_logger": False,
        "beat_max_loop_interval": 60,
        "beat_schedule_filename": str(settings.data_dir / "celerybeat-schedule"),
    }
    if embedded:  # the filesystem transport has no broadcast; nothing to control remotely on one machine
        conf.update({"worker_enable_remote_control": False})
    redbeat_url = settings.fleet.redis_url or (broker if is_redis(broker) else "")
    if redbeat_url and beat:
        conf.update({"redbeat_redis_url": redbeat_url, "redbeat_lock_timeout": 90,
                     "redbeat_key_prefix": "lifecycle:redbeat:"})
    return conf


def settings_path_env(settings: Settings) -> dict[str, str]:
    """Environment a subprocess needs to load the same settings (the config file, if any)."""
    if settings.source and Path(settings.source).is_file():
        return {"LIFECYCLE_CONFIG": str(Path(settings.source).resolve())}
    return {}
