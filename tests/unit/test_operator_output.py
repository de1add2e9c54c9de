"""Pieces of what an operator reads: worker logs as JSON lines (Celery's handlers included, secrets masked),
the terminal progress bar, and the bandwidth counter by direction."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator

import pytest
from prometheus_client import REGISTRY

from lifecycle import log
from lifecycle.bandwidth import TokenBucket
from lifecycle.progress import Progress, counted
from lifecycle_cli.progress import TerminalBar, fit, render
from workers.signals import worker_log_level


@pytest.fixture
def celery_handler() -> Iterator[io.StringIO]:
    """A stand-in for the stderr handler Celery puts on the root logger, restored afterwards."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    root = logging.getLogger()
    saved = {name: (logging.getLogger(name).handlers[:], logging.getLogger(name).level,
                    logging.getLogger(name).propagate) for name in log.OUR_LOGGERS}
    root.addHandler(handler)
    yield stream
    root.removeHandler(handler)
    for name, (handlers, level, propagate) in saved.items():
        logger = logging.getLogger(name)
        logger.handlers, logger.level, logger.propagate = handlers, level, propagate


def test_a_worker_logs_one_json_object_a_line_with_fields_and_masked_secrets(celery_handler: io.StringIO) -> None:
    ours = [h for h in logging.getLogger().handlers if getattr(h, "stream", None) is celery_handler]
    log.configure_under(ours, worker_log_level("WARNING", env={}))
    log.get("workers.signals").event("worker.metrics", port=9808)
    log.get("lifecycle.jobs.runtime").event("job.finish", job="compact", counts={"files_in": 4},
                                       error="redis://:p@ss/w:rd@redis:6379/0 refused")
    logging.getLogger("celery.worker").warning("Connected to redis://:hunter2@redis:6379/0")
    lines = [json.loads(line) for line in celery_handler.getvalue().splitlines()]
    assert [(r["event"], r["logger"]) for r in lines] == [
        ("worker.metrics", "workers.signals"), ("job.finish", "lifecycle.jobs.runtime"),
        ("Connected to redis://:***@redis:6379/0", "celery.worker")]
    assert lines[0]["port"] == 9808 and lines[1]["counts"] == {"files_in": 4}
    assert "hunter2" not in celery_handler.getvalue()


def test_the_worker_log_level_is_info_unless_asked() -> None:
    assert worker_log_level("WARNING", env={}) == "INFO"
    assert worker_log_level(logging.DEBUG, env={}) == "DEBUG"
    assert worker_log_level("INFO", env={"LIFECYCLE_LOG_LEVEL": "warning"}) == "WARNING"
    with pytest.raises(ValueError, match="unknown log level"):
        worker_log_level("INFO", env={"LIFECYCLE_LOG_LEVEL": "loud"})


def test_the_bar_draws_bytes_keeps_numbers_within_a_step_throttles_and_clears() -> None:
    now = [0.0]
    out = io.StringIO()
    bar = TerminalBar(out, interval=1.0, monotonic=lambda: now[0])
    bar(Progress("compact t [p]: group 1/2", 0, 2048, "bytes"))
    bar(Progress("compact t [p]: wrote 1/3 files"))            # within the throttle: not drawn
    now[0] = 2.0
    bar(Progress("compact t [p]: wrote 2/3 files"))            # drawn with the group's numbers
    bar(Progress("compact t [p]: group 2/2", 2048, 2048, "bytes"))   # 100 %: always drawn
    bar.clear()
    frames = out.getvalue().split("\r\x1b[K")[1:]
    assert frames == [
        "[------------------------]   0%  0 B/2.0 KB  compact t [p]: group 1/2",
        "[------------------------]   0%  0 B/2.0 KB  compact t [p]: wrote 2/3 files",
        "[########################] 100%  2.0 KB/2.0 KB  compact t [p]: group 2/2",
        ""]
    assert render("purge t: 5 deleted", 5, None, "files") == "5 files  purge t: 5 deleted"
    assert fit("compact archive.t [mission_id=apollo-7]: group 1/2", 24) == "compact arc…]: group 1/2"


def test_counted_reports_every_n_and_at_the_end() -> None:
    seen: list[int] = []
    assert list(counted(range(5), seen.append, every=2)) == [0, 1, 2, 3, 4]
    assert seen == [2, 4, 5]


def test_charged_bytes_are_counted_by_direction() -> None:
    def value(direction: str) -> float:
        return REGISTRY.get_sample_value("lifecycle_bandwidth_bytes_total", {"direction": direction}) or 0.0

    before = {d: value(d) for d in ("read", "write", "unspecified")}
    bucket = TokenBucket(10**12)
    bucket.acquire(100, "read")
    bucket.acquire(30, "write")
    bucket.acquire(7)
    assert {d: value(d) - before[d] for d in before} == {"read": 100, "write": 30, "unspecified": 7}
