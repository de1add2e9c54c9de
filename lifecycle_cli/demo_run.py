"""The demo: a synthetic archive on the embedded default, every job run through a real Celery worker.

The worker is a `celery -A workers.app worker` subprocess on the embedded broker (kombu's filesystem
transport under the data folder: no server to install), sharing the embedded PostgreSQL. Before and after:
files per partition, snapshots, orphan bytes, cold-tier objects, and the worker's /metrics (also saved to
`<data_dir>/demo-metrics.prom`). Afterwards new small files land in a fresh partition, so there is work
left to plan; the embedded PostgreSQL is stopped unless kept. Returns False when any job did not finish.
"""

from __future__ import annotations

import os
import random
import shutil
import sys
import warnings
from collections import Counter
from collections.abc import Callable
from datetime import date, timedelta
from pathlib import Path
from typing import Any

from pyiceberg.table import Table

from lifecycle.clock import default_clock
from lifecycle.iceberg.catalog import open_catalog
from lifecycle.iceberg.partitions import format_partition
from lifecycle.jobs.base import JOB_NAMES
from lifecycle.settings import Settings
from lifecycle.state import embedded_pg
from lifecycle_cli.demo_worker import DemoWorker, RunWatch, summed_metrics, wait_reaped
from lifecycle_cli.synth import ArchiveSpec, OrphanSpec, add_small_files, build_archive

Echo = Callable[[str], None]
METRIC_PREFIXES = ("files_compacted_total", "snapshots_expired_total", "orphans_cleaned_total",
                   "lineage_validation_failures_total", "lifecycle_job_runs_total", "lifecycle_bytes_rewritten_total",
                   "lifecycle_cold_tier_files_copied_total", "lifecycle_files_purged_total",
                   "lifecycle_manifests_rewritten_total", "lifecycle_bandwidth_bytes_total")
DAY = date(2024, 3, 15)
LATE_PARTITION = ("apollo-8", DAY + timedelta(days=1))  # lands after the run: work left to plan
LATE_FILES = 60


def shape(table: Table) -> dict[str, Any]:
    table = table.refresh()
    per_partition: Counter[str] = Counter()
    for task in table.scan().plan_files():
        f = task.file
        per_partition[format_partition(table.specs()[f.spec_id], table.schema(), f.partition)] += 1
    return {"snapshots": len(table.metadata.snapshots), "data_files": sum(per_partition.values()),
            "files_per_partition": dict(sorted(per_partition.items())), "refs": sorted(table.metadata.refs),
            "metadata_log": len(table.metadata.metadata_log)}


def _print_shape(echo: Echo, title: str, s: dict[str, Any], orphan_bytes: int, cold: int) -> None:
    echo(f"{title}: {s['snapshots']} snapshots, {s['data_files']} data files, refs {', '.join(s['refs'])},"
         f" metadata log {s['metadata_log']}, planted orphans {orphan_bytes} bytes, cold-tier objects {cold}")
    for part, n in s["files_per_partition"].items():
        echo(f"    {part}: {n} files")


def demo_spec() -> ArchiveSpec:
    return ArchiveSpec(
        partitions=[("apollo-7", DAY), ("apollo-7", DAY + timedelta(days=1)), ("apollo-8", DAY)],
        files_per_partition=[60, 55, 12], file_bytes=(20_000, 120_000), history_snapshots=300,
        history_span_days=60, tags={"launch-review": 10}, orphans=[OrphanSpec(20, 10.0), OrphanSpec(5, 1.0)],
        properties={"write.metadata.previous-versions-max": "200"},
    )


def _orphan_bytes(paths: list[str]) -> int:
    return sum(p.stat().st_size for p in (Path(x.removeprefix("file://")) for x in paths) if p.exists())


def _cold_count(store: Any) -> int:
    return int(store.cold_object_count())


def _run_job(echo: Echo, settings: Settings, store: Any, worker: DemoWorker, job: str, table: Table,
             identifier: str) -> bool:
    """Send `job` as the fleet would (compaction: the planning task, which fans out per partition); print
    each run; True when every run finished `done`."""
    from lifecycle.compaction.fanout import candidate_partitions
    from workers import tasks

    watch = RunWatch(store, job, identifier).start()
    if job == "compact":
        expected = len(candidate_partitions(table.refresh(), identifier, settings.for_table(identifier)))
        if not expected:
            echo("  compact: no partition needs it")
            return True
        tasks.send_plan_compaction(identifier, manual=True)
    else:
        expected = 1
        tasks.send_job(job, identifier, None, manual=True)
    runs = watch.wait(expected, worker)
    for run in runs:
        where = f" [{run.partition}]" if run.partition else ""
        counts = ", ".join(f"{k}={v}" for k, v in sorted((run.counts or {}).items()))
        echo(f"  {job}{where}: {run.state}" + (f" ({counts})" if counts else "")
             + (f" error: {run.error}" if run.error else ""))
    if len(runs) < expected:
        echo(f"  {job}: {expected - len(runs)} run(s) without a result (see {worker.log_path})")
    return len(runs) >= expected and all(r.state == "done" for r in runs)


def _fresh(data: Path) -> None:
    for sub in ("warehouse", "catalog.db", "cold", "broker", "prometheus", "celerybeat-schedule",
                "demo-worker.log", "demo-metrics.prom"):
        p = data / sub
        if p.is_dir():
            shutil.rmtree(p)
        elif p.exists():
            p.unlink()


def cli_command() -> str:
    """How to call lifecycle-cli from here: bare if on PATH, else the virtualenv's script."""
    script = Path(sys.executable).parent / "lifecycle-cli"
    found = shutil.which("lifecycle-cli")
    if found and Path(found).resolve() == script.resolve():
        return "lifecycle-cli"
    try:
        return str(script.relative_to(Path.cwd()))
    except ValueError:
        return str(script)


def run_demo(settings: Settings, fresh: bool = True, echo: Echo = print, keep_db: bool = False) -> bool:
    from lifecycle.state.db import database_url
    from lifecycle.state.store import StateStore
    from workers.config import settings_path_env

    data = settings.data_dir
    if fresh:
        _fresh(data)
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
    if settings.embedded_state:
        echo(embedded_pg.server(data).describe())
    store = StateStore(db_url, clock)
    worker: DemoWorker | None = None
    ok = True
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
            ok = _run_job(echo, settings, store, worker, job, archive.table, archive.identifier) and ok
        scraped: list[str] = []
        worker, purged = _next_night_purge(echo, settings, store, db_url, worker, archive, scraped)
        ok = purged and ok
        after = shape(catalog.load_table(archive.identifier))
        _print_shape(echo, "after", after, _orphan_bytes(planted), _cold_count(store))
        from workers import tasks

        tasks.reap_runs.apply_async(queue="control")  # the reaper refreshes the purge-backlog gauge
        scraped.append(wait_reaped(worker))
        (data / "demo-metrics.prom").write_text("\n".join(scraped))
        echo(f"metrics (scraped from the workers' /metrics, summed; all of it in {data / 'demo-metrics.prom'}):")
        for series, value in summed_metrics(scraped, METRIC_PREFIXES).items():
            echo(f"    {series} {value:g}")
        _land_late_files(echo, archive.table)
    finally:
        if worker is not None:
            worker.stop()
        store.close()
        if settings.embedded_state:
            _embedded_at_exit(echo, data, keep_db)
    _next_steps(echo, archive.identifier, ok, data)
    return ok


def _next_night_purge(echo: Echo, settings: Settings, store: Any, db_url: str, worker: DemoWorker,
                      archive: Any, scraped: list[str]) -> tuple[DemoWorker, bool]:
    """Purge only takes files expire journaled `purge_delay_hours` ago: show it with a worker whose clock
    is that much later (LIFECYCLE_FAKE_NOW), as the next night's run would be."""
    from datetime import UTC, datetime

    delay = settings.for_table(archive.identifier).purge_delay_hours
    later = datetime.now(UTC) + timedelta(hours=delay + 1)
    echo(f"purge waits {delay} h after expire; a worker whose clock reads {later:%Y-%m-%d %H:%M} UTC runs it:")
    scraped.append(worker.metrics())  # the next worker starts with a fresh metrics folder
    worker.stop()
    worker = DemoWorker(settings, db_url, LIFECYCLE_FAKE_NOW=later.isoformat())
    worker.wait_ready()
    ok = _run_job(echo, settings, store, worker, "purge", archive.table, archive.identifier)
    return worker, ok


def _land_late_files(echo: Echo, table: Table) -> None:
    mission, day = LATE_PARTITION
    spec = ArchiveSpec(partitions=[LATE_PARTITION], files_per_partition=LATE_FILES, file_bytes=(20_000, 120_000))
    add_small_files(table.refresh(), spec, random.Random(11))
    echo(f"meanwhile a writer landed {LATE_FILES} small files in mission_id={mission},day={day}: work left to do")


def _embedded_at_exit(echo: Echo, data: Path, keep_db: bool) -> None:
    found = embedded_pg.server(data)
    if not found.running:
        return
    if keep_db:
        echo(f"{found.describe()}: kept running (--keep-db); stop it with `{cli_command()} demo --stop`")
        return
    embedded_pg.stop(data)
    echo(f"embedded PostgreSQL pid {found.pid} ({found.pgdata}) stopped. Any command below starts it again on"
         f" demand and leaves it running; `{cli_command()} demo --stop` stops it.")


def _next_steps(echo: Echo, table: str, ok: bool, data: Path) -> None:
    cli = cli_command()
    if not ok:
        echo(f"some jobs did not finish: see the lines above and {data / 'demo-worker.log'}")
    steps = [(f"{cli} run compact --dry-run", "the plan for the files that just landed"),
             (f"{cli} status", "runs, journals, locks, queues"),
             (f"{cli} cold ls --table {table}", "what purge copied to the cold tier")]
    width = max(len(command) for command, _ in steps)
    echo("next, try:")
    for command, why in steps:
        echo(f"  {command:<{width}}  # {why}")
