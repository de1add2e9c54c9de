"""Structured logging with event names; URLs with passwords are masked wherever printed or logged."""

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


class _JsonFormatter(logging.Formatter):
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


def configure(level: str = "WARNING") -> None:
    root = logging.getLogger("lifecycle")
    if any(getattr(h, "_lifecycle", False) for h in root.handlers):
        root.setLevel(level)
        return
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_JsonFormatter())
    handler._lifecycle = True  # type: ignore[attr-defined]
    root.addHandler(handler)
    root.setLevel(level)
    root.propagate = False


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
