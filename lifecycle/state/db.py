"""Connections to the state database: a configured PostgreSQL URL, or the embedded server."""

from __future__ import annotations

import threading
import warnings
from pathlib import Path
from typing import Any

import psycopg

from lifecycle.errors import ServiceUnavailableError
from lifecycle.log import mask
from lifecycle.settings import Settings

_KEEPALIVES: dict[str, Any] = {
    "keepalives": 1,
    "keepalives_idle": 10,
    "keepalives_interval": 5,
    "keepalives_count": 3,
    "connect_timeout": 10,
}

_embedded_lock = threading.Lock()
_embedded_urls: dict[Path, str] = {}


def embedded_url(data_dir: Path) -> str:
    """Start (or reuse) the embedded PostgreSQL server under data_dir/pg and return its URL."""
    pgdata = (data_dir / "pg").resolve()
    with _embedded_lock:
        if pgdata in _embedded_urls:
            return _embedded_urls[pgdata]
        with warnings.catch_warnings():
            # platformdirs warns (two lines on stderr) when XDG_RUNTIME_DIR is unset (cron, containers, root);
            # pgserver only keeps its lock file there, and its fallback folder is fine for that
            warnings.filterwarnings("ignore", message="XDG_RUNTIME_DIR")
            try:
                import pgserver
            except ImportError as exc:  # pragma: no cover - a broken install
                raise ServiceUnavailableError(f"embedded PostgreSQL unavailable: {exc}") from None
            pgdata.mkdir(parents=True, exist_ok=True)
            try:
                server = pgserver.get_server(str(pgdata), cleanup_mode=None)
            except Exception as exc:
                raise ServiceUnavailableError(f"embedded PostgreSQL under {pgdata} failed to start: {exc}") from None
        url = str(server.get_uri())
        _embedded_urls[pgdata] = url
        return url


def database_url(settings: Settings) -> str:
    if settings.state.database_url:
        return settings.state.database_url
    return embedded_url(settings.data_dir)


def connect(url: str, autocommit: bool = True, **extra: Any) -> psycopg.Connection[Any]:
    """A new connection with TCP keepalives; a clear one-line error when the server is unreachable."""
    params = dict(_KEEPALIVES)
    params.update(extra)
    if url.startswith("postgresql+psycopg://"):
        url = "postgresql://" + url[len("postgresql+psycopg://"):]
    try:
        return psycopg.connect(url, autocommit=autocommit, **params)
    except psycopg.OperationalError as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ServiceUnavailableError(f"state database {mask(url)} unreachable: {first}") from None
