"""The Celery configuration the fleet runs with (no services: reads the config the app would use)."""

from __future__ import annotations

from pathlib import Path

import pytest

from lifecycle.errors import ConfigError
from lifecycle.settings import from_mapping
from workers.config import QUEUES, celery_config, time_limits


def test_redis_fleet_config_has_the_safety_settings_and_limits_below_the_visibility_timeout() -> None:
    settings = from_mapping({"fleet": {"broker_url": "redis://broker:6379/0"}},
                            env={"LIFECYCLE_VISIBILITY_TIMEOUT": "3600"})
    conf = celery_config(settings)
    assert conf["broker_url"] == "redis://broker:6379/0"
    assert conf["broker_transport_options"]["visibility_timeout"] == 3600
    assert conf["task_soft_time_limit"] < conf["task_time_limit"] < 3600
    for key in ("task_acks_late", "task_reject_on_worker_lost", "worker_cancel_long_running_tasks_on_connection_loss",
                "worker_send_task_events", "task_ignore_result", "enable_utc"):
        assert conf[key] is True, key
    assert conf["task_send_sent_event"] is False  # see workers/config.py: the fan-out budget
    assert conf["worker_prefetch_multiplier"] == 1
    assert conf["timezone"] == "UTC"
    assert [q.name for q in conf["task_queues"]] == list(QUEUES) == [
        "compaction", "expiration", "orphans", "metadata", "control"]
    routes = conf["task_routes"]
    assert routes["lifecycle.compact"]["queue"] == "compaction"
    assert routes["lifecycle.expire"]["queue"] == routes["lifecycle.purge"]["queue"] == "expiration"
    assert routes["lifecycle.clean-orphans"]["queue"] == "orphans"
    assert routes["lifecycle.rewrite-manifests"]["queue"] == "metadata"
    assert routes["lifecycle.compact-schema-history"]["queue"] == "metadata"
    assert routes["lifecycle.plan-compaction"]["queue"] == routes["lifecycle.reap"]["queue"] == "control"
    assert "redbeat_redis_url" not in conf                     # workers answer `inspect conf`: no Redis URL
    assert celery_config(settings, beat=True)["redbeat_redis_url"] == "redis://broker:6379/0"


def test_time_limits_must_stay_below_the_visibility_timeout() -> None:
    assert time_limits(from_mapping({}, env={"LIFECYCLE_VISIBILITY_TIMEOUT": "10"})) == (10.0, 8.0, 9.0)
    with pytest.raises(ConfigError, match=r"LIFECYCLE_TASK_TIME_LIMIT: .*soft < hard < visibility"):
        from_mapping({}, env={"LIFECYCLE_VISIBILITY_TIMEOUT": "100", "LIFECYCLE_TASK_TIME_LIMIT": "120"})
    with pytest.raises(ConfigError, match="LIFECYCLE_VISIBILITY_TIMEOUT: expected a number, got 'soon'"):
        from_mapping({}, env={"LIFECYCLE_VISIBILITY_TIMEOUT": "soon"})
    # the same rule from the file names the key
    with pytest.raises(ConfigError, match=r"fleet\.task_time_limit_seconds: .*soft < hard < visibility"):
        from_mapping({"fleet": {"visibility_timeout_seconds": 100, "task_time_limit_seconds": 120}}, env={})


def test_the_embedded_default_uses_a_broker_with_no_server(tmp_path: Path) -> None:
    settings = from_mapping({"state": {"data_dir": str(tmp_path)}}, env={})
    conf = celery_config(settings)
    assert conf["broker_url"] == "filesystem://"
    assert Path(conf["broker_transport_options"]["data_folder_in"]).is_dir()
    assert str(tmp_path) in conf["broker_transport_options"]["data_folder_in"]
    assert "redbeat_redis_url" not in conf


def test_a_warm_shutdown_marker_tells_running_jobs_to_stop_at_their_next_checkpoint(tmp_path: Path) -> None:
    import threading

    from tests.conftest import wait_for
    from workers.signals import watch_shutdown

    event = threading.Event()
    marker = tmp_path / "shutdown"
    thread = watch_shutdown(marker, event, every=0.02)
    assert not event.wait(0.1)
    marker.touch()
    wait_for(event.is_set, timeout=5, what="the shutdown event")
    thread.join(timeout=5)
