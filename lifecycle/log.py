"""Structured logging with event names; URLs with passwords are masked wherever printed or logged.

One JSON object a line on stderr: `ts`, `level`, `logger`, `event` and the event's own fields. The CLI
installs it (`--log-level`), and so does every Celery worker and beat (workers/signals.py), for our loggers
and for Celery's own.
"""

from __future__ import annotations

import json
import logging
import re
import sys
from typing import Any

_URL_PASSWORD = re.compile(r"(?P<scheme>[a-zA-Z][a-zA-Z0-9+.\-]*://)(?P<user>[^:/@\s]*):(?P<pw>[^@/\s]+)@")
_KV_PASSWORD = re.compile(r"(?i)\b(password|passwd|secret|aws_secret_access_key)=([^\s&]+)")


def mask(text: str) -> str:
    """Hide the password of every URL (and key=value secret) in text."""
    text = _URL_PASSWORD.sub(lambda m: f"{m['scheme']}{m['user']}:***@", text)
    return _KV_PASSWORD.sub(lambda m: f"{m.group(1)}=***", text)


LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        payload: dict[str, Any] = {
            "ts": self.formatTime(record, "%Y-%m-%dT%H:%M:%S"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "event": getattr(record, "event", record.getMessage()),
        }
        fields = getattr(record, "fields", None)
        if isinstance(fields, dict):
            payload.update(fields)
        if record.exc_info:
            payload["exc"] = self.formatException(record.exc_info)
        return mask(json.dumps(payload, default=str))


OUR_LOGGERS = ("lifecycle", "workers")


def check_level(level: str) -> str:
    name = level.upper()
    if name not in LEVELS:
        raise ValueError(f"unknown log level {level!r} (one of {', '.join(LEVELS)})")
    return name


def configure(level: str = "WARNING") -> None:
    """The CLI: our loggers write JSON lines to stderr at `level`."""
    level = check_level(level)
    for name in OUR_LOGGERS:
        logger = logging.getLogger(name)
        logger.setLevel(level)
        logger.propagate = False
        if not any(getattr(h, "_lifecycle", False) for h in logger.handlers):
            handler = logging.StreamHandler(sys.stderr)
            handler.setFormatter(JsonFormatter())
            handler._lifecycle = True  # type: ignore[attr-defined]
            logger.addHandler(handler)


def configure_under(handlers: list[logging.Handler], level: str) -> None:
    """A Celery process (worker, beat): Celery's own handlers (stderr, or its --logfile) write JSON lines,
    and our loggers log through them at `level`, whatever Celery's own level is."""
    for handler in handlers:
        handler.setFormatter(JsonFormatter())
    for name in OUR_LOGGERS:
        logger = logging.getLogger(name)
        logger.handlers = [h for h in logger.handlers if not getattr(h, "_lifecycle", False)]
        logger.setLevel(check_level(level))
        logger.propagate = True


class EventLogger:
    """logger.event("plan.written", plan_id=..., files=...)."""

    def __init__(self, name: str) -> None:
        self._log = logging.getLogger(name)

    def event(self, event: str, level: int = logging.INFO, **fields: Any) -> None:
        if self._log.isEnabledFor(level):
            self._log.log(level, event, extra={"event": event, "fields": fields})

    def warning(self, event: str, **fields: Any) -> None:
        self.event(event, logging.WARNING, **fields)

    def error(self, event: str, **fields: Any) -> None:
        self.event(event, logging.ERROR, **fields)


def get(name: str) -> EventLogger:
    return EventLogger(name)
