"""Races: a writer committing about every second during compaction, expiration and the orphan scan (no row
lost); two workers on one partition (exactly one compacts); an orphan scan racing a commit (a file that
gets committed is never deleted).

Determinism: the writer thread commits on its own every second AND a checkpoint hook (a JobContext whose
checkpoint first waits for the writer's next commit) makes sure commits land between the job's steps.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import random
import subprocess
import sys
import threading
import time
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest
from pyiceberg.exceptions import CommitFailedException

from lifecycle.clock import SystemClock
from lifecycle.iceberg.catalog import open_catalog
from lifecycle.iceberg.datafiles import data_file_from_parquet
from lifecycle.jobs.base import DONE, LOCKED, NOTHING_TO_DO, JobContext, JobRequest
from lifecycle.jobs.runtime import execute
from lifecycle.settings import Settings
from lifecycle_cli.synth import make_rows, partition_path, synth_lineage, write_file
from tests.chaos.invariants import check_all, content_checksum
from tests.chaos.scenarios import TABLE_SETTINGS, build
from tests.conftest import REPO, cli_env, wait_for, with_table_settings, write_config

pytestmark = pytest.mark.chaos
DAY = date(2024, 3, 15)
MISSION = "apollo-7"


def _row_digest(row: dict[str, Any]) -> bytes:
    return hashlib.blake2b(repr(sorted(row.items())).encode(), digest_size=16).digest()


def _checksum_of(rows: list[dict[str, Any]]) -> tuple[int, str]:
    return len(rows), hashlib.sha256(b"".join(sorted(_row_digest(r) for r in rows))).hexdigest()


class Writer(threading.Thread):
    """Appends a small file (with lineage properties) to one partition about every `interval` seconds."""

    def __init__(self, settings: Settings, table: str, interval: float = 1.0) -> None:
        super().__init__(daemon=True)
        self.catalog = open_catalog(settings)  # its own catalog connection, like a separate process
        self.table = table
        self.interval = interval
        self.stop = threading.Event()
        self.commits = 0
        self.rows: list[dict[str, Any]] = []
        self.errors: list[str] = []
        self.rng = random.Random(7)

    def commit_once(self) -> None:
        batch = make_rows(self.rng, MISSION, DAY, 12, start_id=10_000_000 + len(self.rows))
        for _ in range(20):
            table = self.catalog.load_table(self.table)
            try:
                table.append(batch.cast(_arrow_schema(table)), snapshot_properties=synth_lineage())
                break
            except CommitFailedException:
                continue  # a concurrent commit: the writer refreshes and retries, like a real writer
        else:
            self.errors.append("writer lost 20 commit races in a row")
            return
        self.rows.extend(batch.to_pylist())
        self.commits += 1

    def run(self) -> None:
        while not self.stop.is_set():
            try:
                self.commit_once()
            except Exception as exc:  # pragma: no cover - reported by the test
                self.errors.append(f"{type(exc).__name__}: {exc}")
            self.stop.wait(self.interval)  # the writer's pace, not synchronisation


def _arrow_schema(table: Any) -> pa.Schema:
    from pyiceberg.io.pyarrow import schema_to_pyarrow

    return schema_to_pyarrow(table.schema(), include_field_ids=False)


@dataclasses.dataclass
class HookedContext(JobContext):
    """A JobContext whose first `hooked` checkpoints first run `hook` (the race, made deterministic)."""

    hook: Any = None
    hooked: int = 0
    calls: int = 0

    def checkpoint(self, job: str) -> None:
        self.calls += 1
        if self.hook is not None and self.calls <= self.hooked:
            self.hook(self.calls)
        super().checkpoint(job)


def _hooked(ctx: JobContext, settings: Settings, hook: Any, hooked: int) -> HookedContext:
    fields = {f.name: getattr(ctx, f.name) for f in dataclasses.fields(JobContext)}
    fields.update(settings=settings, clock=SystemClock())
    return HookedContext(**fields, hook=hook, hooked=hooked)


@pytest.mark.parametrize(("job", "hooked"), [("compact", 6), ("expire", 2), ("clean-orphans", 3)])
def test_writer_commits_during_job(job: str, hooked: int, ctx: JobContext, settings: Settings,
                                   monkeypatch: pytest.MonkeyPatch) -> None:
    name = f"race_{job.replace('-', '_')}"
    ctx.settings = with_table_settings(settings, f"archive.{name}", **TABLE_SETTINGS)
    monkeypatch.setenv("LIFECYCLE_ORPHAN_BATCH_SIZE", "4")  # several delete batches on a small table
    scenario = build(ctx, job, name)
    table = ctx.catalog.load_table(scenario.table)
    initial = table.scan().to_arrow().to_pylist()
    writer = Writer(ctx.settings, scenario.table)

    def wait_for_next_commit(_: int) -> None:
        seen = writer.commits
        wait_for(lambda: writer.commits > seen or writer.errors, timeout=30, what="the writer's next commit")

    run_ctx = _hooked(ctx, ctx.settings, wait_for_next_commit, hooked)
    writer.start()
    try:
        result = execute(run_ctx, JobRequest(job, scenario.table))
    finally:
        writer.stop.set()
        writer.join(timeout=30)
    assert not writer.errors, writer.errors
    assert result.status == DONE, result
    assert writer.commits >= min(hooked, 2), "the writer did not commit during the job"
    final = ctx.catalog.load_table(scenario.table)
    expected = _checksum_of(initial + writer.rows)
    assert content_checksum(final) == expected, "a row was lost or changed"
    report = check_all(final, ctx.store, expected)
    assert report["ok"], report
    if job == "compact":
        assert result.counts.get("groups_committed", 0) >= 1, result.counts
    if job == "clean-orphans":
        assert result.counts.get("deleted", 0) == 12, result.counts  # the 12 aged orphans, nothing else


def test_two_workers_on_one_partition(ctx: JobContext, settings: Settings, tmp_path: Path) -> None:
    ctx.settings = with_table_settings(settings, "archive.race_two", **TABLE_SETTINGS)
    scenario = build(ctx, "compact", "race_two")
    reference = content_checksum(ctx.catalog.load_table(scenario.table))
    config = write_config(tmp_path / "two.toml", ctx.settings)
    args = [sys.executable, "-m", "lifecycle_cli", "run", "compact", "--table", scenario.table,
            "--partition", f"mission_id={MISSION},day={DAY.isoformat()}", "--json"]
    procs = [subprocess.Popen(args, env=cli_env(config), cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True) for _ in range(2)]
    outs = [p.communicate(timeout=120) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], [o[1][-1500:] for o in outs]
    statuses = sorted(json.loads(o[0])["status"] for o in outs)
    assert statuses.count(DONE) == 1, statuses
    assert statuses[0] in (LOCKED, NOTHING_TO_DO) or statuses[1] in (LOCKED, NOTHING_TO_DO), statuses
    table = ctx.catalog.load_table(scenario.table)
    replaces = [s for s in table.snapshots() if s.summary is not None and s.summary.get("lifecycle.plan-id")]
    assert len({s.summary.get("lifecycle.plan-id") for s in replaces if s.summary}) >= 1
    with ctx.store.cursor() as cur:
        row = cur.execute("SELECT count(*) AS n FROM plans WHERE job = 'compact' AND state = 'done'"
                          " AND payload ? 'group'").fetchone()
    committed_groups = int(row["n"]) if row else 0
    assert committed_groups == len(replaces), "a group was committed twice or not recorded"
    report = check_all(table, ctx.store, reference)
    assert report["ok"], report


def test_orphan_scan_racing_a_commit(ctx: JobContext, settings: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    """A writer writes a file (aged past the minimum), the scan journals it as a candidate, then the writer
    commits it before the first delete batch: the per-batch re-check must keep it."""
    ctx.settings = with_table_settings(settings, "archive.race_orphan", **TABLE_SETTINGS)
    monkeypatch.setenv("LIFECYCLE_ORPHAN_BATCH_SIZE", "4")
    scenario = build(ctx, "clean-orphans", "race_orphan")
    table = ctx.catalog.load_table(scenario.table)
    path = f"{partition_path(table, MISSION, DAY)}/late-writer-00001.parquet"
    rows = make_rows(random.Random(3), MISSION, DAY, 20, start_id=20_000_000)
    write_file(table, path, rows)
    old = time.time() - timedelta(days=10).total_seconds()
    os.utime(path.removeprefix("file://"), (old, old))
    expected = _checksum_of(table.scan().to_arrow().to_pylist() + rows.to_pylist())
    committed: list[int] = []

    def commit_late_file(call: int) -> None:
        # Checkpoint 1 precedes the scan; from checkpoint 2 on, each precedes one delete batch. Commit the late
        # file as late as possible: right before the batch that would delete it (earlier batches already ran).
        if call < 2 or committed:
            return
        batch = ctx.store.entries(kind="orphan", table_name=scenario.table, states=["pending"], limit=4)
        if path in {e.path for e in batch}:
            late = ctx.catalog.load_table(scenario.table)
            with late.transaction() as tx, \
                    tx.update_snapshot(snapshot_properties=synth_lineage()).fast_append() as fa:
                fa.append_data_file(data_file_from_parquet(late.io, late.metadata, path))
            committed.append(call)

    result = execute(_hooked(ctx, ctx.settings, commit_late_file, 99), JobRequest("clean-orphans", scenario.table))
    assert len(committed) == 1, "the late file was never a pending candidate"
    assert result.status == DONE, result
    assert os.path.exists(path.removeprefix("file://")), "a committed file was deleted by the orphan scan"
    entries = [e for e in ctx.store.entries(table_name=scenario.table, kind="orphan") if e.path == path]
    assert [e.state for e in entries] == ["kept"], "the late file must have been a candidate, then kept"
    assert result.counts.get("deleted") == 12, result.counts
    final = ctx.catalog.load_table(scenario.table)
    report = check_all(final, ctx.store, expected)
    assert report["ok"], report
