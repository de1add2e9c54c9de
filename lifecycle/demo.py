"""The demo: a synthetic archive on the embedded default, every job run on it, before and after."""

from __future__ import annotations

import shutil
from collections import Counter
from collections.abc import Callable
from datetime import date, timedelta

from pyiceberg.table import Table

from lifecycle.catalog import open_catalog
from lifecycle.clock import default_clock
from lifecycle.jobs.base import JOB_NAMES, JobRequest
from lifecycle.partitions import format_partition
from lifecycle.settings import Settings
from lifecycle.synth import ArchiveSpec, OrphanSpec, build_archive

Echo = Callable[[str], None]


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


def _print_shape(echo: Echo, title: str, s: dict[str, object]) -> None:
    echo(f"{title}: {s['snapshots']} snapshots, {s['data_files']} data files, refs {', '.join(s['refs'])},"  # type: ignore[arg-type]
         f" metadata log {s['metadata_log']}")
    for part, n in s["files_per_partition"].items():  # type: ignore[attr-defined]
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


def run_demo(settings: Settings, fresh: bool = True, echo: Echo = print) -> None:
    from lifecycle.runtime import build_context, execute

    data = settings.data_dir
    if fresh:
        for sub in ("warehouse", "catalog.db", "cold"):
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
    echo(f"built {archive.identifier}: {archive.rows} rows, {len(archive.orphans)} planted orphan files")
    before = shape(archive.table)
    _print_shape(echo, "before", before)
    ctx = build_context(settings, clock=clock, manual=True)
    try:
        if fresh:
            with ctx.store.cursor() as cur:
                cur.execute("TRUNCATE journal, plans, job_runs, cold_objects, writer_heartbeats")
        small = 32 * 1024 * 1024
        echo(f"running jobs (small files < {small} bytes; demo thresholds from settings)")
        for job in JOB_NAMES:
            try:
                result = execute(ctx, JobRequest(job, archive.identifier, manual=True))
            except ImportError:
                echo(f"  {job}: not available in this build")
                continue
            counts = ", ".join(f"{k}={v}" for k, v in sorted(result.counts.items()))
            echo(f"  {job}: {result.status}" + (f" ({counts})" if counts else ""))
    finally:
        ctx.store.close()
    after = shape(catalog.load_table(archive.identifier))
    _print_shape(echo, "after", after)
