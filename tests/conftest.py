"""Shared fixtures. Integration tests use real PostgreSQL (a fresh database per test), the moto S3 server on
loopback, and real subprocesses. Unit tests need no service."""

from __future__ import annotations

import dataclasses
import os
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg
import pytest
from hypothesis import HealthCheck
from hypothesis import settings as hypothesis_settings

from lifecycle.bandwidth import TokenBucket
from lifecycle.clock import ManualClock
from lifecycle.jobs.base import JobContext
from lifecycle.settings import Settings, from_mapping
from lifecycle.state.store import StateStore

# The CI machine has two cores shared with worker subprocesses: generating examples may be slow there, which
# says nothing about the code under test. Timing checks stay off; every property is still checked.
hypothesis_settings.register_profile("shared-machine", suppress_health_check=[HealthCheck.too_slow], deadline=None)
hypothesis_settings.load_profile("shared-machine")

PG_ADMIN_URL = os.environ.get("LIFECYCLE_TEST_PG", "postgresql://postgres@127.0.0.1:5432/postgres")
REDIS_URL = os.environ.get("LIFECYCLE_TEST_REDIS", "redis://127.0.0.1:6379/0")
REPO = Path(__file__).resolve().parent.parent


def wait_for(predicate: Any, timeout: float = 30.0, interval: float = 0.05, what: str = "condition") -> Any:
    """Poll with a deadline (never a bare sleep as synchronisation)."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def db_url() -> Iterator[str]:
    """A fresh PostgreSQL database for this test, dropped afterwards."""
    name = f"lc_test_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    base = PG_ADMIN_URL.rsplit("/", 1)[0]
    yield f"{base}/{name}"
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(datetime(2026, 11, 26, 20, 0, tzinfo=UTC))


def make_settings(data_dir: Path, db_url: str, **sections: dict[str, Any]) -> Settings:
    raw: dict[str, Any] = {"state": {"database_url": db_url, "data_dir": str(data_dir)}}
    for name, values in sections.items():
        raw.setdefault(name, {}).update(values)
    return from_mapping(raw, source="test", env={})


@pytest.fixture
def settings(tmp_path: Path, db_url: str) -> Settings:
    return make_settings(tmp_path / "data", db_url)


@pytest.fixture
def catalog(settings: Settings) -> Any:
    from lifecycle.iceberg.catalog import open_catalog

    return open_catalog(settings)


@pytest.fixture
def store(db_url: str, clock: ManualClock) -> Iterator[StateStore]:
    s = StateStore(db_url, clock)
    yield s
    s.close()


@pytest.fixture
def ctx(settings: Settings, catalog: Any, store: StateStore, clock: ManualClock, db_url: str) -> JobContext:
    return JobContext(settings=settings, catalog=catalog, store=store, clock=clock,
                      limiter=TokenBucket(10**12), db_url=db_url, manual=True)


def with_table_settings(settings: Settings, table: str, **values: Any) -> Settings:
    tables = dict(settings.tables)
    tables[table] = dataclasses.replace(settings.for_table(table), **values)
    return dataclasses.replace(settings, tables=tables)


def write_config(path: Path, settings: Settings, extra: str = "") -> Path:
    """A TOML file equivalent to `settings` (state, data folder, table overrides) for CLI subprocesses."""
    lines = ["[state]", f'database_url = "{settings.state.database_url}"', f'data_dir = "{settings.state.data_dir}"']
    if settings.cold_tier.uri:
        lines += ["[cold_tier]", f'uri = "{settings.cold_tier.uri}"']
    for name, t in settings.tables.items():
        lines.append(f'[tables."{name}"]')
        for f in dataclasses.fields(t):
            lines.append(f"{f.name} = {getattr(t, f.name)!r}")
    path.write_text("\n".join(lines) + "\n" + extra)
    return path


def cli_env(config: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYICEBERG_")}
    env.update({"LIFECYCLE_CONFIG": str(config), "PYTHONUNBUFFERED": "1"}, **extra)
    return env


def run_cli(args: list[str], env: dict[str, str], timeout: float = 240) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "lifecycle_cli", *args], env=env, capture_output=True,
                          text=True, timeout=timeout, cwd=REPO)


@pytest.fixture(scope="session")
def moto_endpoint() -> Iterator[str]:
    """moto's S3 server on loopback, one per test session."""
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    endpoint = f"http://127.0.0.1:{port}"

    def up() -> bool:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return True
        except OSError:
            return False

    wait_for(up, timeout=30, what="moto server")
    os.environ.setdefault("AWS_ACCESS_KEY_ID", "testing")
    os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "testing")
    os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
    yield endpoint
    proc.terminate()
    proc.wait(timeout=10)


@pytest.fixture
def s3_bucket(moto_endpoint: str) -> str:
    import boto3

    name = f"lc-{uuid.uuid4().hex[:12]}"
    boto3.client("s3", endpoint_url=moto_endpoint, region_name="us-east-1").create_bucket(Bucket=name)
    return name


def s3_catalog_properties(tmp_path: Path, endpoint: str, bucket: str) -> dict[str, str]:
    return {
        "type": "sql",
        "uri": f"sqlite:///{tmp_path / 's3catalog.db'}",
        "warehouse": f"s3://{bucket}/warehouse",
        "s3.endpoint": endpoint,
        "s3.access-key-id": "testing",
        "s3.secret-access-key": "testing",
        "s3.region": "us-east-1",
        "s3.force-virtual-addressing": "false",
    }


def pyiceberg_env(props: dict[str, str], name: str = "archive") -> dict[str, str]:
    """PyIceberg catalog properties as PYICEBERG_CATALOG__<NAME>__... variables for CLI subprocesses
    (`s3.endpoint` → `..._S3__ENDPOINT`, `-` → `_`)."""
    return {
        f"PYICEBERG_CATALOG__{name.upper()}__{key.replace('.', '__').replace('-', '_').upper()}": value
        for key, value in props.items()
    }
