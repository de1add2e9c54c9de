"""Outages on PRIVATE services (the machine's shared PostgreSQL and Redis are never touched):

- PostgreSQL: the advisory lock's backend is terminated mid-run → the job stops before committing
  (LockLostError), the table is unchanged, and a rerun completes with every invariant intact.
- Redis: the fleet bandwidth bucket's server is stopped mid-run → the job fails safe before moving the
  bytes it could not charge (nothing committed); a Redis restart between two charges is invisible; the rerun
  completes once Redis is back.
- Object store: the S3 endpoint (a TCP proxy in front of a private moto server) refuses connections during
  clean-orphans → the run fails cleanly after the client's retries; once the endpoint is back the rerun
  resumes the journaled plan and completes; nothing reachable is lost.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import socket
import subprocess
import sys
import threading
import uuid
from collections.abc import Iterator
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest

from lifecycle.clock import ManualClock, SystemClock
from lifecycle.errors import LockLostError
from lifecycle.fleet.bandwidth_redis import fleet_limiter
from lifecycle.iceberg.catalog import open_catalog
from lifecycle.jobs.base import DONE, JobContext, JobRequest
from lifecycle.jobs.runtime import execute
from lifecycle.settings import Settings
from lifecycle.state.store import StateStore
from lifecycle_cli.synth import ArchiveSpec, build_archive
from tests.chaos.invariants import check_all, content_checksum
from tests.chaos.scenarios import TABLE_SETTINGS, build
from tests.chaos.test_races import HookedContext
from tests.conftest import (
    REPO,
    cli_env,
    free_port,
    make_settings,
    s3_catalog_properties,
    wait_for,
    with_table_settings,
    write_config,
)

pytestmark = pytest.mark.chaos
PARTITION = "mission_id=apollo-7,day=2024-03-15"


class CallHook:
    """A Limiter that runs `hook(n)` on its n-th acquire, then charges the wrapped limiter."""

    def __init__(self, inner: Any, hook: Any) -> None:
        self.inner = inner
        self.hook = hook
        self.calls = 0
        self.rate = float(getattr(inner, "rate", 0.0))

    def acquire(self, nbytes: int, direction: str = "unspecified") -> float:
        self.calls += 1
        self.hook(self.calls)
        return float(self.inner.acquire(nbytes, direction))


def _listening(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.2):
            return True
    except OSError:
        return False


# ---------------------------------------------------------------- PostgreSQL: the lock connection drops

@pytest.fixture(scope="module")
def private_pg(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    pgserver = pytest.importorskip("pgserver")
    server = pgserver.get_server(str(tmp_path_factory.mktemp("pg")), cleanup_mode="stop")
    yield server
    server.cleanup()


def _restart(server: Any) -> None:
    """A real restart of the private server (fast shutdown: every session is cut)."""
    import pgserver

    kw = {"user": server.system_user} if server.system_user else {}
    pgserver.pg_ctl(["-w", "-m", "fast", "restart"], pgdata=server.pgdata, **kw)


@pytest.mark.parametrize("fault", ["terminate-lock-backend", "restart-server"])
def test_lock_connection_drops_mid_compaction(private_pg: Any, fault: str, tmp_path: Path, catalog: Any) -> None:
    """The fault hits while the group is being rewritten (first bandwidth charge): the run must not commit."""
    private_pg_uri = str(private_pg.get_uri())
    name = f"lc_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(private_pg_uri, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    url = private_pg_uri.replace("/postgres?", f"/{name}?", 1)
    settings = with_table_settings(make_settings(tmp_path / "data", url), "archive.pg_drop", **TABLE_SETTINGS)
    store = StateStore(url, SystemClock())
    from lifecycle.bandwidth import TokenBucket

    killed: list[int] = []

    def drop_lock_backend(n: int) -> None:
        if n == 1 and fault == "restart-server":
            _restart(private_pg)
            killed.append(1)
        elif n == 1:
            with psycopg.connect(url, autocommit=True) as conn:
                rows = conn.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                                    " WHERE application_name LIKE 'lifecycle-lock:%%' AND datname = %s",
                                    (name,)).fetchall()
            killed.append(len(rows))

    ctx = JobContext(settings=settings, catalog=catalog, store=store, clock=SystemClock(),
                     limiter=CallHook(TokenBucket(10**12), drop_lock_backend), db_url=url, manual=True)
    try:
        scenario = build(ctx, "compact", "pg_drop")
        before = ctx.catalog.load_table(scenario.table)
        reference = content_checksum(before)
        # terminated lock backend: LockLostError before the commit. Restarted server: the state store's own
        # connection died too, so the first state write after the fault fails (psycopg.OperationalError).
        expected_error = LockLostError if fault == "terminate-lock-backend" else (LockLostError, psycopg.Error)
        with pytest.raises(expected_error):
            execute(ctx, JobRequest("compact", scenario.table, PARTITION))
        assert killed == [1], "exactly the run's lock backend was terminated"
        after = ctx.catalog.load_table(scenario.table)
        assert after.metadata_location == before.metadata_location, "the job committed without its lock"
        if fault == "restart-server":  # a new process after the outage: a fresh state-store connection
            store.close()
            store = ctx.store = StateStore(url, SystemClock())
        ctx.limiter = TokenBucket(10**12)
        result = execute(ctx, JobRequest("compact", scenario.table, PARTITION))
        assert result.status == DONE and result.counts.get("recovered_removed", 0) >= 1, result
        report = check_all(ctx.catalog.load_table(scenario.table), store, reference)
        assert report["ok"], report
    finally:
        store.close()


def _private_db(server: Any) -> str:
    name = f"lc_{uuid.uuid4().hex[:10]}"
    uri = str(server.get_uri())
    with psycopg.connect(uri, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    return uri.replace("/postgres?", f"/{name}?", 1)


def test_lock_connection_drops_between_orphan_batches(private_pg: Any, tmp_path: Path, catalog: Any,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """A table-wide deleting job: the lock dies before the first delete batch → nothing is deleted unguarded;
    the rerun resumes the journaled plan and deletes exactly the aged orphans."""
    from lifecycle.bandwidth import TokenBucket

    monkeypatch.setenv("LIFECYCLE_ORPHAN_BATCH_SIZE", "4")
    url = _private_db(private_pg)
    dbname = url.split("?", 1)[0].rsplit("/", 1)[1]
    settings = with_table_settings(make_settings(tmp_path / "data", url), "archive.pg_orphans", **TABLE_SETTINGS)
    store = StateStore(url, SystemClock())
    ctx = JobContext(settings=settings, catalog=catalog, store=store, clock=SystemClock(),
                     limiter=TokenBucket(10**12), db_url=url, manual=True)
    try:
        scenario = build(ctx, "clean-orphans", "pg_orphans")
        reference = content_checksum(ctx.catalog.load_table(scenario.table))
        on_disk_before = _files(tmp_path / "data")
        assert sum("orphan-" in p for p in on_disk_before) == 15, "the planted orphans live under the data folder"

        def drop_lock(n: int) -> None:
            if n == 2:  # the plan is journaled; the first delete batch is next
                with psycopg.connect(url, autocommit=True) as conn:
                    conn.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                                 " WHERE application_name LIKE 'lifecycle-lock:%%' AND datname = %s", (dbname,))

        hooked = HookedContext(**{f.name: getattr(ctx, f.name) for f in dataclasses.fields(JobContext)},
                               hook=drop_lock, hooked=2)
        with pytest.raises(LockLostError):
            execute(hooked, JobRequest("clean-orphans", scenario.table))
        assert _files(tmp_path / "data") == on_disk_before, "a file was deleted without the lock"
        assert len(store.open_plans("clean-orphans", scenario.table)) == 1
        result = execute(ctx, JobRequest("clean-orphans", scenario.table))
        assert result.status == DONE and result.counts.get("resumed_plans") == 1, result
        assert result.counts.get("deleted") == 12, result.counts
        report = check_all(ctx.catalog.load_table(scenario.table), store, reference)
        assert report["ok"], report
    finally:
        store.close()


def _files(root: Path) -> set[str]:
    return {str(p) for p in root.rglob("*") if p.is_file()}


# ---------------------------------------------------------------- Redis: the bandwidth bucket's server restarts

class PrivateRedis:
    def __init__(self) -> None:
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.proc = subprocess.Popen(["redis-server", "--port", str(self.port), "--bind", "127.0.0.1",
                                      "--save", "", "--appendonly", "no"],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_for(lambda: _listening(self.port), timeout=20, what="private redis")

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait(timeout=20)
            self.proc = None


@pytest.fixture
def private_redis() -> Iterator[PrivateRedis]:
    if shutil.which("redis-server") is None:
        pytest.skip("redis-server is not installed")
    redis = PrivateRedis()
    redis.start()
    yield redis
    redis.stop()


def test_redis_restart_mid_compaction(private_redis: PrivateRedis, ctx: JobContext, settings: Settings) -> None:
    fleet = dataclasses.replace(settings.fleet, redis_url=f"redis://127.0.0.1:{private_redis.port}/0")
    ctx.settings = with_table_settings(dataclasses.replace(settings, fleet=fleet), "archive.redis_out",
                                       **TABLE_SETTINGS)
    ctx.clock = SystemClock()
    bucket = fleet_limiter(ctx.settings)
    assert bucket is not None
    scenario = build(ctx, "compact", "redis_out")
    before = ctx.catalog.load_table(scenario.table)
    reference = content_checksum(before)

    def redis_down(n: int) -> None:
        if n == 1:
            private_redis.stop()

    ctx.limiter = CallHook(bucket, redis_down)
    with pytest.raises(Exception) as failed:  # redis.ConnectionError: the bytes were never charged nor moved
        execute(ctx, JobRequest("compact", scenario.table, PARTITION))
    assert "connect" in str(failed.value).lower() or "redis" in type(failed.value).__module__
    assert ctx.catalog.load_table(scenario.table).metadata_location == before.metadata_location
    private_redis.start()  # back, empty (no persistence): the bucket restarts full

    def redis_restart(n: int) -> None:
        if n == 1:  # a restart between two charges: the client reconnects, the run goes on
            private_redis.stop()
            private_redis.start()

    ctx.limiter = CallHook(bucket, redis_restart)
    ctx.limiter.acquire(1)  # the restart happens here, before the rerun's first charge
    result = execute(ctx, JobRequest("compact", scenario.table, PARTITION))
    assert result.status == DONE and result.counts.get("groups_committed", 0) >= 1, result
    assert bucket.charged_bytes > 0
    report = check_all(ctx.catalog.load_table(scenario.table), ctx.store, reference)
    assert report["ok"], report


# ---------------------------------------------------------------- object store: S3 endpoint unavailable

class Proxy:
    """A TCP proxy on a fixed port that can refuse connections (endpoint down) and come back."""

    def __init__(self, target_port: int) -> None:
        self.port = free_port()
        self.target = target_port
        self.server: socket.socket | None = None
        self.conns: list[socket.socket] = []
        self.lock = threading.Lock()

    def start(self) -> None:
        srv = socket.socket()
        srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        srv.bind(("127.0.0.1", self.port))
        srv.listen(64)
        self.server = srv
        threading.Thread(target=self._accept, args=(srv,), daemon=True).start()

    def stop(self) -> None:
        srv, self.server = self.server, None
        if srv is not None:
            srv.close()
        with self.lock:
            for c in self.conns:
                try:
                    c.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
                c.close()
            self.conns.clear()

    def _accept(self, srv: socket.socket) -> None:
        while True:
            try:
                client, _ = srv.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(("127.0.0.1", self.target))
            except OSError:
                client.close()
                continue
            with self.lock:
                self.conns += [client, upstream]
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    @staticmethod
    def _pipe(src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass


@pytest.fixture
def s3_proxy() -> Iterator[tuple[str, Proxy]]:
    port = free_port()
    moto = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for(lambda: _listening(port), timeout=30, what="private moto server")
        proxy = Proxy(port)
        proxy.start()
        yield f"http://127.0.0.1:{port}", proxy
        proxy.stop()
    finally:
        moto.terminate()
        moto.wait(timeout=20)


def test_object_store_outage_during_clean_orphans(s3_proxy: tuple[str, Proxy], ctx: JobContext,
                                                  settings: Settings, tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    import boto3
    from pyiceberg.catalog.sql import SqlCatalog

    direct, proxy = s3_proxy
    for var, value in (("AWS_ACCESS_KEY_ID", "testing"), ("AWS_SECRET_ACCESS_KEY", "testing"),
                       ("AWS_DEFAULT_REGION", "us-east-1"), ("LIFECYCLE_ORPHAN_BATCH_SIZE", "3")):
        monkeypatch.setenv(var, value)
    bucket = f"lc-{uuid.uuid4().hex[:10]}"
    s3 = boto3.client("s3", endpoint_url=direct, region_name="us-east-1")
    s3.create_bucket(Bucket=bucket)
    props = s3_catalog_properties(tmp_path, f"http://127.0.0.1:{proxy.port}", bucket)
    ctx.catalog = SqlCatalog("archive", **props)
    ctx.settings = with_table_settings(settings, "archive.s3_outage", **TABLE_SETTINGS)
    spec = ArchiveSpec(name="s3_outage", partitions=[("apollo-7", date(2024, 3, 15))], files_per_partition=4,
                       file_bytes=(20_000, 40_000))
    archive = build_archive(ctx.catalog, spec, SystemClock())
    reference = content_checksum(archive.table)
    prefix = archive.table.location().removeprefix(f"s3://{bucket}/").rstrip("/")
    orphans = [f"{prefix}/data/mission_id=apollo-7/day=2024-03-15/orphan-{i:03d}.parquet" for i in range(7)]
    for key in orphans:
        s3.put_object(Bucket=bucket, Key=key, Body=b"x" * 1000)
    ctx.clock = ManualClock(SystemClock().now() + timedelta(days=30))  # the orphans are now old enough

    def endpoint_down(n: int) -> None:
        if n == 2:  # the plan is journaled; before the first delete batch the object store goes away
            proxy.stop()

    run_ctx = HookedContext(**{f.name: getattr(ctx, f.name) for f in dataclasses.fields(JobContext)},
                            hook=endpoint_down, hooked=2)
    with pytest.raises(Exception) as failed:
        execute(run_ctx, JobRequest("clean-orphans", archive.identifier))
    assert not isinstance(failed.value, AssertionError)
    plans = ctx.store.open_plans("clean-orphans", archive.identifier)
    assert len(plans) == 1, "the journaled plan must survive the outage"
    listed = {o["Key"] for o in s3.list_objects_v2(Bucket=bucket, Prefix=prefix)["Contents"]}
    assert set(orphans) <= listed, "nothing may be deleted while the store is unreachable"
    proxy.start()
    result = execute(ctx, JobRequest("clean-orphans", archive.identifier))
    assert result.status == DONE and result.counts.get("resumed_plans") == 1, result
    assert result.counts.get("deleted") == len(orphans), result.counts
    listed = {o["Key"] for o in s3.list_objects_v2(Bucket=bucket, Prefix=prefix)["Contents"]}
    assert not set(orphans) & listed
    report = check_all(ctx.catalog.load_table(archive.identifier), ctx.store, reference)
    assert report["ok"], report


# ---------------------------------------------------------------- Redis: a real worker's broker restarts

def test_worker_survives_a_broker_restart_mid_task(private_redis: PrivateRedis, db_url: str, tmp_path: Path) -> None:
    """A Celery worker on the private Redis compacts a partition slowly (70 KB/s); Redis restarts (empty:
    no persistence) while outputs are staged. Nothing is corrupted; once Redis is back the worker reconnects
    and a re-sent message completes the partition with every row intact."""
    import signal
    import textwrap

    from celery import Celery

    url = f"redis://127.0.0.1:{private_redis.port}/0"
    settings = make_settings(tmp_path / "data", db_url, fleet={"broker_url": url, "redis_url": url},
                             bandwidth={"object_store_bytes_per_second": 70_000, "lifecycle_share": 1.0})
    settings = with_table_settings(settings, "archive.sda_observations", small_file_bytes=200_000,
                                   min_small_files=3, target_file_bytes=1_000_000)
    extra = textwrap.dedent(f"""
        [fleet]
        broker_url = "{url}"
        redis_url = "{url}"
        [bandwidth]
        object_store_bytes_per_second = 70000
        lifecycle_share = 1.0
    """)
    config = write_config(tmp_path / "lifecycle.toml", settings, extra=extra)
    store = StateStore(db_url, SystemClock())
    catalog = open_catalog(settings)
    archive = build_archive(catalog, ArchiveSpec(partitions=[("apollo-7", date(2024, 3, 15))], files_per_partition=5,
                                                 file_bytes=(20_000, 40_000)), SystemClock())
    reference = content_checksum(archive.table)
    heartbeat = tmp_path / "worker-heartbeat"
    log_path = tmp_path / "worker.log"
    env = cli_env(config, LIFECYCLE_VISIBILITY_TIMEOUT="30", LIFECYCLE_RUN_HEARTBEAT_SECONDS="1",
                  LIFECYCLE_METRICS_PORT=str(free_port()), LIFECYCLE_HEARTBEAT_FILE=str(heartbeat),
                  LIFECYCLE_HEARTBEAT_SECONDS="1", PROMETHEUS_MULTIPROC_DIR=str(tmp_path / "prom"))
    with log_path.open("wb") as log:
        worker = subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "workers.app", "worker", "-Q", "compaction,control", "-c", "1",
             "-P", "prefork", "-n", "chaos@%h", "--without-gossip", "--without-mingle", "-l", "INFO"],
            cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)

    def log_text() -> str:
        return log_path.read_text(errors="replace")[-3000:]

    def staged() -> int:
        with store.cursor() as cur:
            row = cur.execute("SELECT count(*) AS n FROM journal WHERE kind = 'stage'").fetchone()
        return int(row["n"]) if row else 0

    def runs() -> list[str]:
        with store.cursor() as cur:
            return [r["state"] for r in cur.execute("SELECT state FROM job_runs WHERE job = 'compact'")]

    def send() -> None:  # a manual message, signed with the fleet secret as `lifecycle-cli enqueue` signs it
        from lifecycle.jobs.admission import sign_message

        run_id = f"compact-chaos-{uuid.uuid4().hex[:12]}"
        auth = sign_message(settings, "compact", archive.identifier, PARTITION, True, run_id)
        client = Celery(broker=url)
        client.send_task("lifecycle.compact", queue="compaction",
                         kwargs={"table": archive.identifier, "partition": PARTITION, "manual": True,
                                 "run_id": run_id, "auth": auth})

    try:
        wait_for(lambda: heartbeat.exists() or worker.poll() is not None, timeout=60, what="worker ready")
        assert worker.poll() is None, log_text()
        send()
        wait_for(lambda: staged() > 0, timeout=60, what="an output staged (mid-task)\n" + log_text())
        private_redis.stop()
        before_restart = catalog.load_table(archive.identifier)
        private_redis.start()
        # fail safe: whatever the interrupted run did, the table reads the same rows
        assert content_checksum(before_restart) == reference
        wait_for(lambda: "done" in runs() or "failed" in runs() or "stopped" in runs() or worker.poll() is not None,
                 timeout=90, what="the interrupted run to end\n" + log_text())
        assert worker.poll() is None, "the worker died with its broker\n" + log_text()
        if "done" not in runs():
            send()  # the message died with the unpersisted Redis: send it again
            wait_for(lambda: "done" in runs(), timeout=90, what="the re-sent run to finish\n" + log_text())
        table = catalog.load_table(archive.identifier)
        report = check_all(table, store, reference)
        assert report["ok"], report
        assert sum(1 for _ in table.scan().plan_files()) == 1, "the partition was compacted to one file"
    finally:
        if worker.poll() is None:
            os.killpg(worker.pid, signal.SIGKILL)
        worker.wait(timeout=20)
        store.close()


def test_object_store_outage_mid_purge(s3_proxy: tuple[str, Proxy], ctx: JobContext, settings: Settings,
                                       tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Purge of an s3:// table into a local cold tier (copies stream through the worker and are charged to
    the limiter): the endpoint goes away at the third copy. The run fails mid-batch; after the endpoint is
    back the rerun finishes every journaled file, each in the cold tier exactly once."""
    import boto3
    from pyiceberg.catalog.sql import SqlCatalog

    direct, proxy = s3_proxy
    for var, value in (("AWS_ACCESS_KEY_ID", "testing"), ("AWS_SECRET_ACCESS_KEY", "testing"),
                       ("AWS_DEFAULT_REGION", "us-east-1")):
        monkeypatch.setenv(var, value)
    bucket = f"lc-{uuid.uuid4().hex[:10]}"
    boto3.client("s3", endpoint_url=direct, region_name="us-east-1").create_bucket(Bucket=bucket)
    ctx.catalog = SqlCatalog("archive", **s3_catalog_properties(tmp_path, f"http://127.0.0.1:{proxy.port}", bucket))
    cold = dataclasses.replace(settings.cold_tier, uri=f"file://{tmp_path / 'cold'}")
    ctx.settings = with_table_settings(dataclasses.replace(settings, cold_tier=cold), "archive.s3_purge",
                                       **TABLE_SETTINGS)
    ctx.clock = SystemClock()
    spec = ArchiveSpec(name="s3_purge", partitions=[("apollo-7", date(2024, 3, 15))], files_per_partition=3,
                       file_bytes=(20_000, 40_000), history_snapshots=16, history_span_days=60,
                       history_rewrite_every=3)
    archive = build_archive(ctx.catalog, spec, SystemClock())
    reference = content_checksum(archive.table)
    assert execute(ctx, JobRequest("expire", archive.identifier)).status == DONE
    journaled = ctx.store.entries(table_name=archive.identifier, kind="purge")
    assert len(journaled) >= 5
    ctx.clock = ManualClock(SystemClock().now() + timedelta(hours=25))  # past the purge delay

    def endpoint_down(n: int) -> None:
        if n == 3:
            proxy.stop()

    inner = ctx.limiter
    ctx.limiter = CallHook(inner, endpoint_down)
    with pytest.raises(Exception) as failed:
        execute(ctx, JobRequest("purge", archive.identifier))
    assert not isinstance(failed.value, AssertionError)
    states = [e.state for e in ctx.store.entries(table_name=archive.identifier, kind="purge")]
    assert "pending" in states, "the outage must have interrupted the batch"
    proxy.start()
    ctx.limiter = inner
    result = execute(ctx, JobRequest("purge", archive.identifier))
    assert result.status == DONE, result
    final = [e for e in ctx.store.entries(table_name=archive.identifier, kind="purge")]
    assert {e.state for e in final} <= {"deleted", "skipped"}, [e.state for e in final]
    copied = {o.source_path for o in ctx.store.cold_objects(archive.identifier)}
    never_copied = {e.path for e in final if str(e.info.get("note", "")).startswith("already gone")}
    assert copied == {e.path for e in final if e.state == "deleted"} - never_copied
    for obj in ctx.store.cold_objects(archive.identifier):
        assert Path(obj.cold_uri.removeprefix("file://")).is_file()
    report = check_all(ctx.catalog.load_table(archive.identifier), ctx.store, reference)
    assert report["ok"], report
