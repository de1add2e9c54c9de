"""A bench run's own world: a temporary folder, a fresh state database on the PostgreSQL server, a Redis
database as the broker (flushed), and the configuration file that points at them (`LIFECYCLE_CONFIG`).
`close()` flushes the Redis database and drops the state database."""

from __future__ import annotations

import os
import tempfile
import uuid
from dataclasses import dataclass
from pathlib import Path

import psycopg


@dataclass(frozen=True)
class Workspace:
    work: Path
    admin_url: str
    dbname: str
    broker: str
    config: Path

    @property
    def db_url(self) -> str:
        return f"{self.admin_url.rsplit('/', 1)[0]}/{self.dbname}"

    def redis(self) -> object:
        import redis

        return redis.Redis.from_url(self.broker)

    def close(self) -> None:
        self.redis().flushdb()  # type: ignore[attr-defined]
        with psycopg.connect(self.admin_url, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{self.dbname}" WITH (FORCE)')


def workspace(name: str, admin_url: str, redis_url: str, redis_db: int, toml: str = "",
              data_subdir: str = "") -> Workspace:
    """Create it; `toml` is appended to the [state] and [fleet] sections written here."""
    work = Path(tempfile.mkdtemp(prefix=f"lifecycle-{name}-"))
    dbname = f"{name.replace('-', '')}_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(admin_url, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{dbname}"')
    broker = f"{redis_url.rstrip('/')}/{redis_db}"
    ws = Workspace(work, admin_url, dbname, broker, work / "lifecycle.toml")
    ws.config.write_text(
        f'[state]\ndatabase_url = "{ws.db_url}"\ndata_dir = "{work / data_subdir}"\n'
        f'[fleet]\nbroker_url = "{broker}"\nredis_url = "{broker}"\n{toml}')
    os.environ["LIFECYCLE_CONFIG"] = str(ws.config)
    (work / "prom").mkdir()
    os.environ.setdefault("PROMETHEUS_MULTIPROC_DIR", str(work / "prom"))
    ws.redis().flushdb()  # type: ignore[attr-defined]
    return ws
