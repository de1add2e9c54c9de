"""The demo: a synthetic archive on the embedded default, every job run through a real Celery worker.

The worker is a `celery -A workers.app worker` subprocess on the embedded broker (kombu's filesystem
transport under the data folder: no server to install), sharing the embedded PostgreSQL. Before and after:
files per partition, snapshots, orphan bytes, cold-tier objects, and the worker's /metrics.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
import uuid
import warnings
from collections import Counter
from collections.abc import Callable
from datetime import date, timedelta
from pathlib import Path
from typing import Any

from pyiceberg.table import Table

from lifecycle.catalog import open_catalog
from lifecycle.clock import default_clock
from lifecycle.jobs.base import JOB_NAMES
from lifecycle.partitions import format_partition
from lifecycle.settings import Settings
from lifecycle.synth import ArchiveSpec, OrphanSpec, build_archive

Echo = Callable[[str], None]
QUEUES = "compaction,expiration,orphans,metadata,control"
JOB_TIMEOUT = float(os.environ.get("LIFECYCLE_DEMO_JOB_TIMEOUT", "900"))
METRIC_PREFIXES = ("files_compacted_total", "snapshots_expired_total", "orphans_cleaned_total",
                   "lineage_validation_failures_total", "lifecycle_job_runs_total", "lifecycle_bytes_rewritten_total",
                   "lifecycle_cold_tier_files_copied_total", "lifecycle_files_purged_total",
                   "lifecycle_manifests_rewritten_total")


def shape(table: Table) -> dict[str, object]:
    table = table.refresh()
    per_partition: Counter[str] = Counter()
    for task in table.scan().plan_files():
        f = task.file
        spec = table.specs()[f.spec_id]
        per_partition[format_partition(spec, table.schema(), f.partition)] += 1
    return {
        "snapshots": len(table.metadata.snapshots),
        "snapshot_log": len(table.metadata.snapshot_log),
        "data_files": sum(per_partition.values()),
        "files_per_partition": dict(sorted(per_partition.items())),
        "refs": sorted(table.metadata.refs),
        "metadata_log": len(table.metadata.metadata_log),
    }


def _print_shape(echo: Echo, title: str, s: dict[str, Any], orphan_bytes: int, cold: int) -> None:
    echo(f"{title}: {s['snapshots']} snapshots, {s['data_files']} data files, refs {', '.join(s['refs'])},"
         f" metadata log {s['metadata_log']}, planted orphans {orphan_bytes} bytes, cold-tier objects {cold}")
    for part, n in s["files_per_partition"].items():
        echo(f"    {part}: {n} files")


def demo_spec() -> ArchiveSpec:
    day = date(2024, 3, 15)
    return ArchiveSpec(
        partitions=[("apollo-7", day), ("apollo-7", day + timedelta(days=1)), ("apollo-8", day)],
        files_per_partition=[60, 55, 12],
        file_bytes=(20_000, 120_000),
        history_snapshots=300,
        history_span_days=60,
        tags={"launch-review": 10},
        orphans=[OrphanSpec(20, 10.0), OrphanSpec(5, 1.0)],
        properties={"write.metadata.previous-versions-max": "200"},
    )


def _orphan_bytes(paths: list[str]) -> int:
    total = 0
    for p in paths:
        local = Path(p.removeprefix("file://"))
        if local.exists():
            total += local.stat().st_size
    return total


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class DemoWorker:
    """A real `celery worker` subprocess on the embedded broker, with its /metrics endpoint."""

    def __init__(self, settings: Settings, db_url: str, **extra_env: str) -> None:
        from workers.config import settings_path_env

        data = settings.data_dir
        self.port = _free_port()
        self.heartbeat = data / "worker-heartbeat"
        self.heartbeat.unlink(missing_ok=True)
        self.log_path = data / "demo-worker.log"
        env = dict(os.environ, **settings_path_env(settings), LIFECYCLE_DATABASE_URL=db_url,
                   LIFECYCLE_METRICS_PORT=str(self.port), LIFECYCLE_METRICS_ADDR="127.0.0.1",
                   LIFECYCLE_HEARTBEAT_FILE=str(self.heartbeat), LIFECYCLE_HEARTBEAT_SECONDS="2",
                   PROMETHEUS_MULTIPROC_DIR=str(data / "prometheus"), PYTHONUNBUFFERED="1", **extra_env)
        self._log = self.log_path.open("wb")
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


def _wait_runs(store: Any, run_ids: list[str], worker: DemoWorker) -> list[Any]:
    from lifecycle.state.runs import RunStore

    runs = RunStore(store)
    deadline = time.monotonic() + JOB_TIMEOUT
    while True:
        found = [runs.get(r) for r in run_ids]
        if all(r is not None and r.state in ("done", "failed", "stopped") for r in found):
            return found
        if worker.proc.poll() is not None or time.monotonic() > deadline:
            return found
        time.sleep(0.3)


def _run_job(echo: Echo, settings: Settings, store: Any, worker: DemoWorker, job: str, table: Any,
             identifier: str) -> None:
    from lifecycle.fleet import candidate_partitions
    from lifecycle.jobs.registry import runner
    from lifecycle.state.runs import run_id_for
    from workers import tasks

    try:
        runner(job)
    except ImportError:
        echo(f"  {job}: not available in this build")
        return
    token = uuid.uuid4().hex
    if job == "compact":
        parts: list[str | None] = list(candidate_partitions(table.refresh(), identifier,
                                                            settings.for_table(identifier)))
    else:
        parts = [None]
    if not parts:
        echo(f"  {job}: no partition needs it")
        return
    run_ids = [run_id_for(job, identifier, p or "", token) for p in parts]
    for part, run_id in zip(parts, run_ids, strict=True):
        tasks.send_job(job, identifier, part, manual=True, run_id=run_id)
    for part, run in zip(parts, _wait_runs(store, run_ids, worker), strict=True):
        where = f" [{part}]" if part else ""
        if run is None:
            echo(f"  {job}{where}: no result (see {worker.log_path})")
            continue
        counts = ", ".join(f"{k}={v}" for k, v in sorted(run.counts.items()))
        echo(f"  {job}{where}: {run.state}" + (f" ({counts})" if counts else "")
             + (f" error: {run.error}" if run.error else ""))


def run_demo(settings: Settings, fresh: bool = True, echo: Echo = print) -> None:
    from lifecycle.state.db import database_url
    from lifecycle.state.store import StateStore
    from workers.config import settings_path_env

    data = settings.data_dir
    if fresh:
        for sub in ("warehouse", "catalog.db", "cold", "broker", "prometheus", "celerybeat-schedule"):
            p = data / sub
            if p.is_dir():
                shutil.rmtree(p)
            elif p.exists():
                p.unlink()
    data.mkdir(parents=True, exist_ok=True)
    echo(f"embedded default under {data}")
    clock = default_clock()
    catalog = open_catalog(settings)
    archive = build_archive(catalog, demo_spec(), clock)
    planted = [p for p, _ in archive.orphans]
    echo(f"built {archive.identifier}: {archive.rows} rows, {len(planted)} planted orphan files")
    with warnings.catch_warnings():  # the embedded server's platformdirs lookup warns about XDG_RUNTIME_DIR
        warnings.simplefilter("ignore")
        db_url = database_url(settings)
    store = StateStore(db_url, clock)
    worker: DemoWorker | None = None
    try:
        if fresh:
            with store.cursor() as cur:
                cur.execute("TRUNCATE journal, plans, job_runs, cold_objects, writer_heartbeats")
        _print_shape(echo, "before", shape(archive.table), _orphan_bytes(planted), _cold_count(store))
        os.environ.update(settings_path_env(settings))  # workers.app (the producer here) loads the same settings
        worker = DemoWorker(settings, db_url)
        worker.wait_ready()
        echo(f"celery worker pid {worker.proc.pid} on the embedded broker; metrics on :{worker.port}/metrics")
        for job in JOB_NAMES:
            _run_job(echo, settings, store, worker, job, archive.table, archive.identifier)
        scraped: list[str] = []
        worker = _next_night_purge(echo, settings, store, db_url, worker, archive, scraped)
        after = shape(catalog.load_table(archive.identifier))
        _print_shape(echo, "after", after, _orphan_bytes(planted), _cold_count(store))
        echo("metrics (scraped from the workers' /metrics, summed):")
        for series, value in summed_metrics([*scraped, worker.metrics()]).items():
            echo(f"    {series} {value:g}")
    finally:
        if worker is not None:
            worker.stop()
        store.close()


def _next_night_purge(echo: Echo, settings: Settings, store: Any, db_url: str, worker: DemoWorker,
                      archive: Any, scraped: list[str]) -> DemoWorker:
    """Purge only takes files expire journaled `purge_delay_hours` ago: show it with a worker whose clock
    is that much later (LIFECYCLE_FAKE_NOW), as the next night's run would be."""
    from datetime import UTC, datetime

    try:
        from lifecycle.jobs.registry import runner

        runner("purge")
    except ImportError:
        return worker
    delay = settings.for_table(archive.identifier).purge_delay_hours
    later = datetime.now(UTC) + timedelta(hours=delay + 1)
    echo(f"purge waits {delay} h after expire; a worker whose clock reads {later:%Y-%m-%d %H:%M} UTC runs it:")
    scraped.append(worker.metrics())  # the next worker starts with a fresh metrics folder
    worker.stop()
    worker = DemoWorker(settings, db_url, LIFECYCLE_FAKE_NOW=later.isoformat())
    worker.wait_ready()
    _run_job(echo, settings, store, worker, "purge", archive.table, archive.identifier)
    return worker


def summed_metrics(texts: list[str]) -> dict[str, float]:
    total: dict[str, float] = {}
    for text in texts:
        for line in text.splitlines():
            if line.startswith(METRIC_PREFIXES):
                series, _, value = line.rpartition(" ")
                total[series] = total.get(series, 0.0) + float(value)
    return total


def _cold_count(store: Any) -> int:
    with store.cursor() as cur:
        cur.execute("SELECT count(*) AS n FROM cold_objects")
        row = cur.fetchone()
    return int(row["n"]) if row else 0
