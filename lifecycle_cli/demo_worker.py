"""The demo's fleet: a real `celery -A workers.app worker` subprocess on the embedded broker, started as the
README says (no PROMETHEUS_MULTIPROC_DIR: it makes its own metrics folder), and the runs it records."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.request
import uuid
from dataclasses import dataclass, field
from typing import Any

from lifecycle.settings import Settings
from lifecycle.state.models import JobRun
from lifecycle.state.runs import RunStore

QUEUES = "compaction,expiration,orphans,metadata,control"
JOB_TIMEOUT = float(os.environ.get("LIFECYCLE_DEMO_JOB_TIMEOUT", "900"))
TERMINAL = ("done", "failed", "stopped")


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class DemoWorker:
    """A real `celery worker` subprocess on the embedded broker, with its /metrics endpoint on loopback."""

    def __init__(self, settings: Settings, db_url: str, **extra_env: str) -> None:
        from workers.config import settings_path_env

        data = settings.data_dir
        self.port = _free_port()
        self.heartbeat = data / "worker-heartbeat"
        self.heartbeat.unlink(missing_ok=True)
        self.log_path = data / "demo-worker.log"
        env = {k: v for k, v in os.environ.items() if k != "PROMETHEUS_MULTIPROC_DIR"}
        env.update(settings_path_env(settings), LIFECYCLE_DATABASE_URL=db_url, LIFECYCLE_METRICS_PORT=str(self.port),
                   LIFECYCLE_METRICS_ADDR="127.0.0.1", LIFECYCLE_HEARTBEAT_FILE=str(self.heartbeat),
                   LIFECYCLE_HEARTBEAT_SECONDS="2", PYTHONUNBUFFERED="1", **extra_env)
        self._log = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "workers.app", "worker", "-Q", QUEUES, "-c", "1", "-P", "prefork",
             "-n", f"demo-{uuid.uuid4().hex[:6]}@%h", "--without-gossip", "--without-mingle", "--without-heartbeat",
             "-l", "WARNING"],
            env=env, stdout=self._log, stderr=subprocess.STDOUT, cwd=os.getcwd(),
        )

    def wait_ready(self, timeout: float = 120) -> None:
        deadline = time.monotonic() + timeout
        while not self.heartbeat.exists():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the demo worker did not start; see {self.log_path}")
            time.sleep(0.2)

    def metrics(self) -> str:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/metrics", timeout=10) as resp:
                return str(resp.read().decode())
        except OSError as exc:
            return f"# metrics unavailable: {exc}"

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        self._log.close()


@dataclass
class RunWatch:
    """The runs of one job on one table that appear after `start()`: the worker records them itself."""

    store: Any
    job: str
    table: str
    seen: set[str] = field(default_factory=set)

    def _rows(self) -> list[JobRun]:
        return RunStore(self.store).of_job(self.job, self.table)

    def start(self) -> RunWatch:
        self.seen = {r.run_id for r in self._rows()}
        return self

    def wait(self, expected: int, worker: DemoWorker) -> list[JobRun]:
        deadline = time.monotonic() + JOB_TIMEOUT
        while True:
            new = [r for r in self._rows() if r.run_id not in self.seen]
            if len(new) >= expected and all(r.state in TERMINAL for r in new):
                return new
            if worker.proc.poll() is not None or time.monotonic() > deadline:
                return new
            time.sleep(0.3)


def wait_reaped(worker: DemoWorker, timeout: float = 120) -> str:
    """Scrape until the reaper's purge-backlog gauge shows up (it runs on the control queue)."""
    deadline = time.monotonic() + timeout
    text = worker.metrics()
    while "lifecycle_purge_journal_oldest_eligible_age_seconds{" not in text and time.monotonic() < deadline:
        if worker.proc.poll() is not None:
            break
        time.sleep(0.3)
        text = worker.metrics()
    return text


def summed_metrics(texts: list[str], prefixes: tuple[str, ...]) -> dict[str, float]:
    total: dict[str, float] = {}
    for text in texts:
        for line in text.splitlines():
            if line.startswith(prefixes):
                series, _, value = line.rpartition(" ")
                total[series] = total.get(series, 0.0) + float(value)
    return total
