"""No secret leaks: a fleet whose Redis (broker, bandwidth bucket, redbeat) and PostgreSQL URLs carry a password
with '@', '/' and ':' in it, run for real (worker, beat, the CLI); every place an operator or a Flower login
can read is scanned for any piece of the password, raw or percent-encoded."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import uuid
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import psycopg
import pytest

from lifecycle.clock import ManualClock
from lifecycle.iceberg.catalog import open_catalog
from lifecycle.state.runs import RunStore
from lifecycle.state.store import StateStore
from lifecycle_cli.synth import ArchiveSpec, build_archive
from tests.conftest import REPO, cli_env, free_port, make_settings, run_cli, wait_for, write_config
from tests.integration.test_fleet import PARTS, TABLE

PASSWORD = "Qw3rtyU1@Zx8cVb2/Nm4kLp9:Hy6tGf5"
PIECES = ("Qw3rtyU1", "Zx8cVb2", "Nm4kLp9", "Hy6tGf5", quote(PASSWORD, safe=""))


def leaks(text: str) -> list[str]:
    return [p for p in PIECES if p in text]


@pytest.fixture
def locked_redis() -> Iterator[str]:
    port = free_port()
    proc = subprocess.Popen(["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                             "--appendonly", "no", "--requirepass", PASSWORD],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"redis://:{quote(PASSWORD, safe='')}@127.0.0.1:{port}/0"
    import redis

    wait_for(lambda: _pings(redis.Redis.from_url(url)), timeout=20, what="password-protected redis")
    yield url
    proc.terminate()
    proc.wait(timeout=20)


def _pings(client: object) -> bool:
    try:
        return bool(client.ping())  # type: ignore[attr-defined]
    except Exception:
        return False


def test_no_password_reaches_inspect_conf_logs_job_runs_status_or_beat(
    locked_redis: str, db_url: str, tmp_path: Path, clock: ManualClock,
) -> None:
    host_db = db_url.replace("postgresql://postgres@", f"postgresql://postgres:{quote(PASSWORD, safe='')}@")
    settings = make_settings(tmp_path / "data", host_db)
    extra = textwrap.dedent(f"""
        [fleet]
        broker_url = "{locked_redis}"
        redis_url = "{locked_redis}"
    """)
    config = write_config(tmp_path / "lifecycle.toml", settings, extra=extra)
    store = StateStore(host_db, clock)                    # trust auth: the password is carried, never needed
    build_archive(open_catalog(settings), ArchiveSpec(partitions=PARTS[:1], files_per_partition=3,
                                                      file_bytes=(20_000, 40_000)), clock)
    runs = RunStore(store)   # a run that failed with the secret in its error, in three spellings
    runs.ensure("leaky", "expire", TABLE, "", manual=False)
    runs.start("leaky", "lifecycle@x:1")
    runs.finish("leaky", "failed", error=f"OperationalError: {host_db} refused; PGPASSWORD={PASSWORD};"
                                         f' {{"password": "{PASSWORD}"}}')
    env = cli_env(config, LIFECYCLE_VISIBILITY_TIMEOUT="30", LIFECYCLE_RUN_HEARTBEAT_SECONDS="1")
    name = f"w{uuid.uuid4().hex[:8]}"
    heartbeat = tmp_path / "heartbeat"
    log_path = tmp_path / "worker.log"
    beat_log = tmp_path / "beat.log"
    procs = []
    try:
        with log_path.open("wb") as log:
            worker = subprocess.Popen(
                [sys.executable, "-m", "celery", "-A", "workers.app", "worker", "-Q", "compaction,control",
                 "-c", "1", "-n", f"{name}@%h", "--without-gossip", "--without-mingle", "-l", "INFO"],
                cwd=REPO, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
                env={**env, "LIFECYCLE_METRICS_PORT": str(free_port()), "LIFECYCLE_HEARTBEAT_FILE": str(heartbeat),
                     "LIFECYCLE_HEARTBEAT_SECONDS": "1", "PROMETHEUS_MULTIPROC_DIR": str(tmp_path / "prom")})
        procs.append(worker)
        wait_for(lambda: heartbeat.exists() or worker.poll() is not None, timeout=60, what="worker ready")
        assert worker.poll() is None, log_path.read_text()[-3000:]
        enqueued = run_cli(["enqueue", "compact", "--table", TABLE, "--partition",
                            f"mission_id={PARTS[0][0]},day={PARTS[0][1]}", "--json"], env)
        assert enqueued.returncode == 0, enqueued.stderr
        wait_for(lambda: [r.state for r in runs.recent(limit=5) if r.job == "compact"] == ["done"], timeout=90,
                 what="the enqueued run done\n" + log_path.read_text()[-3000:])

        conf = subprocess.run([sys.executable, "-m", "celery", "-A", "workers.app", "inspect", "conf", "-d",
                               f"{name}@{os.uname().nodename}", "--timeout", "20", "--json"],
                              cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
        assert conf.returncode == 0 and "broker_url" in conf.stdout, (conf.stdout, conf.stderr)
        shown = json.loads(conf.stdout.strip().splitlines()[-1])
        assert len(shown) == 1 and "redbeat_redis_url" not in next(iter(shown.values()))

        with beat_log.open("wb") as log:
            beat = subprocess.Popen([sys.executable, "-m", "celery", "-A", "workers.app", "beat", "-S",
                                     "redbeat.RedBeatScheduler", "-l", "DEBUG"], cwd=REPO, env=env, stdout=log,
                                    stderr=subprocess.STDOUT, start_new_session=True)
        procs.append(beat)
        wait_for(lambda: "Sending due task" in beat_log.read_text(errors="replace") or beat.poll() is not None,
                 timeout=90, what="beat emitting\n" + beat_log.read_text(errors="replace")[-3000:])
        assert beat.poll() is None, beat_log.read_text()[-3000:]

        status = run_cli(["status"], env)
        status_json = run_cli(["status", "--json"], env)
        assert status.returncode == 0 and status_json.returncode == 0, status.stderr + status_json.stderr
        assert "leaky" in status_json.stdout and "***" in status_json.stdout
        with psycopg.connect(db_url) as conn:
            rows = conn.execute("SELECT job_runs::text FROM job_runs").fetchall()
        scanned = {
            "celery inspect conf": conf.stdout + conf.stderr,
            "worker log": log_path.read_text(errors="replace"),
            "beat log": beat_log.read_text(errors="replace"),
            "status": status.stdout + status.stderr,
            "status --json": status_json.stdout + status_json.stderr,
            "enqueue": enqueued.stdout + enqueued.stderr,
            "job_runs": "\n".join(r[0] for r in rows),
        }
        assert all(scanned.values())
        assert {where: leaks(text) for where, text in scanned.items() if leaks(text)} == {}
    finally:
        for proc in procs:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)
        store.close()
