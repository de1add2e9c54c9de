"""One fault scenario per job: build the table state the job needs, know how to run it from the CLI."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

from lifecycle.clock import SystemClock
from lifecycle.jobs.base import JobContext, JobRequest
from lifecycle.jobs.runtime import execute
from lifecycle_cli.synth import ArchiveSpec, OrphanSpec, build_archive

REPO = Path(__file__).resolve().parents[2]
JOB_OF_PREFIX = {
    "compact": "compact", "expire": "expire", "purge": "purge", "orphans": "clean-orphans",
    "rewrite-manifests": "rewrite-manifests", "schema-history": "compact-schema-history",
    "compact-schema-history": "compact-schema-history",
}

# Per-table settings that make every job have work on a small table.
TABLE_SETTINGS: dict[str, Any] = {
    "small_file_bytes": 200_000, "min_small_files": 8, "target_file_bytes": 600_000,
    "retention_days": 30, "purge_delay_hours": 24, "orphan_min_age_days": 7,
    "manifest_target_bytes": 16_384, "metadata_log_max": 3,
}


def crash_points() -> dict[str, list[str]]:
    """Every named crash point in lifecycle/, by job (found in the source, so new points are covered)."""
    found: dict[str, list[str]] = {}
    for path in (REPO / "lifecycle").rglob("*.py"):
        for name in re.findall(r'crash_point\("([^"]+)"\)', path.read_text()):
            prefix = name.split(".", 1)[0]
            job = JOB_OF_PREFIX.get(prefix)
            if job is not None:
                found.setdefault(job, []).append(name)
    return {job: sorted(set(names)) for job, names in found.items()}


@dataclass
class Scenario:
    job: str
    table: str
    env: dict[str, str] = field(default_factory=dict)   # extra environment for the CLI run


def build(ctx: JobContext, job: str, name: str) -> Scenario:
    """Create table `archive.<name>` in the state `job` needs; returns how to run the job on it."""
    clock = SystemClock()
    day = date(2024, 3, 15)
    history = 0 if job == "compact" else 40
    spec = ArchiveSpec(
        name=name,
        partitions=[("apollo-7", day), ("apollo-8", day + timedelta(days=1))],
        files_per_partition=[10, 3], file_bytes=(30_000, 90_000),
        history_snapshots=history, history_span_days=60, history_rewrite_every=3,
        tags={"audit": 2} if history else {},
        orphans=[OrphanSpec(12, 10.0), OrphanSpec(3, 1.0)] if job == "clean-orphans" else [],
    )
    archive = build_archive(ctx.catalog, spec, clock)
    scenario = Scenario(job, archive.identifier)
    if job == "purge":
        execute(ctx, JobRequest("expire", archive.identifier, manual=True))
        later = datetime.now().astimezone() + timedelta(hours=25)
        scenario.env["LIFECYCLE_FAKE_NOW"] = later.isoformat()
    if job == "clean-orphans":
        scenario.env["LIFECYCLE_ORPHAN_BATCH_SIZE"] = "4"
    if job == "compact-schema-history":
        table = archive.table
        for i in range(6):  # grow the metadata log past metadata_log_max
            with table.transaction() as tx:
                tx.set_properties({f"chaos.step-{i}": str(i)})
            table = table.refresh()
    return scenario
