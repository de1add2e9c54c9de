"""A real Celery worker killed (SIGKILL) while a Z-order compaction spills its sorted runs, and while it merges
them: the dead run's scratch folder is left behind and nothing is committed; the rerun removes the scratch,
abandons the dead plan and completes the partition with every row intact.

The crash points `spill.after-run` and `spill.merge-step` are under a prefix of their own (not a job's), so the
generic suite in test_chaos.py, which runs the bin-pack scenario, does not expect to reach them.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import uuid
from datetime import date
from pathlib import Path

import pytest
import redis

from lifecycle.clock import SystemClock
from lifecycle.iceberg.catalog import open_catalog
from lifecycle.state.models import ABANDONED, REMOVED
from lifecycle.state.store import StateStore
from lifecycle_cli.synth import ArchiveSpec, build_archive
from tests.chaos.invariants import check_all, content_checksum
from tests.conftest import REPO, cli_env, free_port, make_settings, run_cli, wait_for, with_table_settings, write_config
from tests.integration.test_fleet import REDIS_URL, redis_db, send, signed

pytestmark = pytest.mark.chaos
__all__ = ["redis_db"]   # the fixture, used by name
PARTITION = "mission_id=apollo-7,day=2024-03-15"
BUDGET = 16 << 20        # the smallest budget the settings accept: 4 MiB chunks, a handful of runs here


@pytest.mark.parametrize("crash_at", ["spill.after-run:2", "spill.merge-step:2"])
def test_kill_during_spill_and_merge_leaves_nothing_the_rerun_does_not_clean(
        crash_at: str, db_url: str, tmp_path: Path, redis_db: redis.Redis) -> None:
    scratch = tmp_path / "scratch"
    settings = make_settings(tmp_path / "data", db_url, fleet={"broker_url": REDIS_URL, "redis_url": REDIS_URL},
                             compaction={"memory_budget_bytes": BUDGET, "scratch_dir": str(scratch)})
    name = f"spill_{crash_at.split('.')[1].split(':')[0].replace('-', '_')}"
    settings = with_table_settings(settings, f"archive.{name}", small_file_bytes=1_000_000, min_small_files=8,
                                   target_file_bytes=2_000_000)
    config = write_config(tmp_path / "lifecycle.toml", settings, extra=textwrap.dedent(f"""
        [fleet]
        broker_url = "{REDIS_URL}"
        redis_url = "{REDIS_URL}"
        [compaction]
        memory_budget_bytes = {BUDGET}
        scratch_dir = "{scratch}"
    """))
    store = StateStore(db_url, SystemClock())
    catalog = open_catalog(settings)
    archive = build_archive(catalog, ArchiveSpec(
        name=name, partitions=[("apollo-7", date(2024, 3, 15))], files_per_partition=30, file_bytes=(300_000, 500_000),
        properties={"lifecycle.zorder-columns": "payload_id,sensor_kind"}), SystemClock())
    reference = content_checksum(archive.table)
    snapshots = len(archive.table.snapshots())
    heartbeat, log_path = tmp_path / "heartbeat", tmp_path / "worker.log"
    env = cli_env(config, LIFECYCLE_CRASH_AT=crash_at, LIFECYCLE_VISIBILITY_TIMEOUT="600",
                  LIFECYCLE_RUN_HEARTBEAT_SECONDS="1", LIFECYCLE_METRICS_PORT=str(free_port()),
                  LIFECYCLE_HEARTBEAT_FILE=str(heartbeat), LIFECYCLE_HEARTBEAT_SECONDS="1",
                  PROMETHEUS_MULTIPROC_DIR=str(tmp_path / "prom"))
    with log_path.open("wb") as log:
        worker = subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "workers.app", "worker", "-Q", "compaction", "-c", "1",
             "-P", "prefork", "-n", f"spill{uuid.uuid4().hex[:6]}@%h", "--without-gossip", "--without-mingle",
             "-l", "INFO"], cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)

    def log_text() -> str:
        return log_path.read_text(errors="replace")[-3000:]

    try:
        wait_for(lambda: heartbeat.exists() or worker.poll() is not None, timeout=60, what="worker ready")
        assert worker.poll() is None, log_text()
        send("lifecycle.compact", "compaction",
             **signed(settings, "compact", table=archive.identifier, partition=PARTITION, manual=True))
        wait_for(lambda: any(s in log_text() for s in ("SIGKILL", "signal 9", "succeeded in", "task.rejected")),
                 timeout=180, what=f"the pool child killed at {crash_at}\n" + log_text())
        assert "succeeded in" not in log_text() and "task.rejected" not in log_text(), log_text()
    finally:
        if worker.poll() is None:
            os.killpg(worker.pid, signal.SIGKILL)   # the whole worker goes: no redelivery races the rerun
        worker.wait(timeout=20)
    # the dead run: its scratch (with runs) is still there, journaled and open; the table is untouched
    left = list(scratch.glob("lifecycle-scratch-*"))
    assert len(left) == 1 and list(left[0].glob("run-*.arrow")), left
    open_entries = store.entries(kind="scratch", table_name=archive.identifier, states=["pending"])
    assert [e.path for e in open_entries] == [str(left[0])]
    table = catalog.load_table(archive.identifier)
    assert len(table.snapshots()) == snapshots and content_checksum(table) == reference

    rerun = run_cli(["run", "compact", "--table", archive.identifier], cli_env(config), timeout=300)
    assert rerun.returncode == 0, rerun.stderr[-2000:]
    assert list(scratch.iterdir()) == []
    assert {e.state for e in store.entries(kind="scratch", table_name=archive.identifier)} == {REMOVED}
    dead = store.plan(open_entries[0].plan_id)
    assert dead is not None and dead.state == ABANDONED
    table = catalog.load_table(archive.identifier)
    report = check_all(table, store, reference)
    assert report["ok"], report
    assert len(table.snapshots()) == snapshots + 1                 # the rerun's one replace commit
    store.close()
