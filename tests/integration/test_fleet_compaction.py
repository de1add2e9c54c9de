"""One table, many partitions, one enqueue, one real worker with several processes: the partition tasks rewrite
in parallel and their commits are batched per table (lifecycle/compaction/committer.py).

Reproduces issue 17's measurement: 12 partitions x 52 small files, `lifecycle-cli enqueue compact --table`,
`celery worker -c 6`. Before batching, sibling commits raced and abandoned a quarter of the partitions."""

from __future__ import annotations

import math
import os
import signal
import subprocess
import textwrap
from collections.abc import Callable, Iterator
from datetime import date, timedelta
from pathlib import Path

import psycopg
import pytest
import redis

from lifecycle.clock import ManualClock
from lifecycle.iceberg.catalog import open_catalog
from lifecycle.state.store import StateStore
from lifecycle_cli.synth import ArchiveSpec, build_archive
from tests.conftest import make_settings, run_cli, wait_for, with_table_settings, write_config
from tests.integration.test_fleet import REDIS_URL, TABLE, Fleet, files_per_partition, queues_drained, sample
from tests.integration.test_fleet import redis_db as redis_db

PARTITIONS = [(f"apollo-{m}", date(2024, 3, 15) + timedelta(days=d)) for m in range(6) for d in range(2)]
FILES = 52
# A group's run waits (holding its process) until its group is committed, so one snapshot holds at most as
# many groups as there are processes: the snapshots of a pass are ceil(P / min(batch, processes)).
PROCESSES = 6
# A fixed clock inside the compaction pause: the enqueue is manual, it runs anyway.
NOW = "2026-11-26T12:00:00+00:00"


@pytest.fixture
def fleet_12(tmp_path: Path, db_url: str, clock: ManualClock, redis_db: redis.Redis,
             ) -> Iterator[Callable[..., Fleet]]:
    procs: list[subprocess.Popen[bytes]] = []

    def make(batch: int, partitions: list[tuple[str, date]] = PARTITIONS, files: int = FILES) -> Fleet:
        settings = make_settings(tmp_path / "data", db_url, fleet={"broker_url": REDIS_URL, "redis_url": REDIS_URL})
        settings = with_table_settings(settings, TABLE, small_file_bytes=200_000, min_small_files=3,
                                       target_file_bytes=4_000_000)
        extra = textwrap.dedent(f"""
            [fleet]
            broker_url = "{REDIS_URL}"
            redis_url = "{REDIS_URL}"
            [bandwidth]
            object_store_bytes_per_second = 1000000000
            lifecycle_share = 1.0
            [compaction]
            commit_batch_max_groups = {batch}
            commit_linger_seconds = 5.0
        """)
        config = write_config(tmp_path / "lifecycle.toml", settings, extra=extra)
        StateStore(db_url, clock).close()
        archive = build_archive(open_catalog(settings), ArchiveSpec(partitions=partitions, files_per_partition=files,
                                                                    file_bytes=(8_000, 16_000)), clock)
        return Fleet(settings, archive, config, tmp_path, db_url, procs)

    yield make
    for proc in procs:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)


def plan_states(db_url: str) -> dict[str, int]:
    with psycopg.connect(db_url) as conn:
        rows = conn.execute("SELECT state, count(*) FROM plans WHERE job = 'compact' GROUP BY state").fetchall()
    return {str(s): int(n) for s, n in rows}


@pytest.mark.parametrize("batch", [6, 50])
def test_twelve_partitions_on_six_processes_all_compact_from_one_enqueue_in_batched_snapshots(
    fleet_12: Callable[..., Fleet], redis_db: redis.Redis, batch: int,
) -> None:
    fleet = fleet_12(batch)
    table = fleet.table()
    rows_before = table.scan().to_arrow().num_rows
    snapshots_before = len(table.metadata.snapshots)
    assert files_per_partition(table) == dict.fromkeys(fleet.archive.data_files, FILES)
    worker = fleet.start_worker(concurrency=PROCESSES, LIFECYCLE_FAKE_NOW=NOW)

    out = run_cli(["enqueue", "compact", "--table", TABLE], fleet.env())
    assert out.returncode == 0, out.stderr

    def all_finished() -> bool:
        runs = fleet.runs()
        return len(runs) == len(PARTITIONS) and all(r["state"] in ("done", "failed") for r in runs)

    wait_for(all_finished, timeout=900, interval=0.5, what="12 partition runs finished\n" + worker.log_text())
    runs = fleet.runs()
    assert [r["state"] for r in runs] == ["done"] * len(PARTITIONS), runs
    assert sum(int(r["counts"].get("groups_abandoned", 0)) for r in runs) == 0, runs
    assert sum(int(r["counts"].get("groups_committed", 0)) for r in runs) >= len(PARTITIONS), runs

    table = fleet.table()
    assert files_per_partition(table) == dict.fromkeys(fleet.archive.data_files, 1)   # every partition compacted
    assert table.scan().to_arrow().num_rows == rows_before                              # rows exact
    new = table.metadata.snapshots[snapshots_before:]
    compactions = [s for s in new if (s.summary or {}).get("lifecycle.job") == "compact"]
    assert len(new) == len(compactions)                                                  # nothing else committed
    assert 1 <= len(compactions) <= math.ceil(len(PARTITIONS) / min(batch, PROCESSES)), [s.summary for s in compactions]
    assert plan_states(fleet.db_url) == {"done": sum(int(r["counts"]["groups_committed"]) for r in runs)}
    wait_for(lambda: queues_drained(redis_db), timeout=30, what="queues drained and nothing unacked")
    text = worker.metrics()
    assert sample(text, "lifecycle_compaction_groups_total", table=TABLE, outcome="abandoned") in (None, 0.0)
    assert sample(text, "lifecycle_compaction_commits_total", table=TABLE) == len(compactions)
    metadata = Path(table.metadata_location.removeprefix("file://"))
    assert sample(text, "lifecycle_table_metadata_bytes", table=TABLE) == metadata.stat().st_size
