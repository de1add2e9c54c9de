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

# Characters that end a URL, a value or a token in the text mask() sees (plain text, JSON, Python reprs).
_END = "\\s\"'<>`"
# scheme://user:password@host — the password may itself hold '@', '/' or ':' (unencoded): the userinfo runs to
# the LAST '@' of the token, so such a password is hidden whole (a later '@' in a path only hides more).
_URL_PASSWORD = re.compile(rf"(?P<scheme>[a-zA-Z][a-zA-Z0-9+.\-]*://)(?P<user>[^:/@{_END}]*):[^{_END}]*@")
_SECRET_WORDS = r"(?:password|passwd|pwd|secret|token(?!s)|credential|api_?key|access_?key)"
_SECRET_KEY = rf"[A-Za-z0-9_.\-]*{_SECRET_WORDS}[A-Za-z0-9_.\-]*"
# "password": "..." / 'password': '...' (JSON, Python reprs): the quoted value, escapes included
_QUOTED = re.compile(rf"(?i)(?P<k>([\"']){_SECRET_KEY}\2\s*[:=]\s*)(?P<q>[\"'])(?:\\.|(?!(?P=q)).)*(?P=q)")
# PGPASSWORD=..., password=..., secret: ... (env dumps, DSNs, query strings): the value to the end of the token
_KV = re.compile(rf"(?i)(?P<k>\b{_SECRET_KEY}\s*(?:=|:(?!//))\s*)(?P<v>(?:\\.|[^\s\"'&,;\\])+)")


def mask(text: str) -> str:
    """Hide secrets in text: the password of every URL, and the value of every password/secret/token key
    (key=value, key: value, JSON or Python-repr "key": "value")."""
    text = _URL_PASSWORD.sub(lambda m: f"{m['scheme']}{m['user']}:***@", text)
    text = _QUOTED.sub(lambda m: f"{m['k']}{m['q']}***{m['q']}", text)
    return _KV.sub(lambda m: f"{m['k']}***" if m["v"] != "***" else m.group(0), text)


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
            handler._lifecycle = True  # type: ignore[attr-defined]  # our marker on a stdlib handler
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
