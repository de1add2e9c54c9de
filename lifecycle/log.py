"""Structured logging with event names; URLs with passwords are masked wherever printed or logged."""

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
