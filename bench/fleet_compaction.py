"""Fleet compaction of ONE table: P partitions x F small files, one `celery worker` with W processes.

Builds the table (real small Parquet files, local warehouse, SQL catalog), starts a real worker on a real Redis
broker (database --redis-db, flushed before and after) with the state in a fresh PostgreSQL database, runs
`lifecycle-cli enqueue compact --table ...` exactly as an operator does, and waits until every partition run
has finished. Prints partitions compacted per minute (enqueue to last run finished), snapshots created,
commit retries (the worker's lifecycle_commit_retries_total), abandoned groups, and the peak metadata file
size (the largest metadata.json the table has written).

    .venv/bin/python bench/fleet_compaction.py --partitions 12 --files 52 --workers 6
    .venv/bin/python bench/fleet_compaction.py --partitions 200 --files 20 --workers 8
"""

from __future__ import annotations

import argparse
import math
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import psycopg

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
TABLE = "archive.sda_observations"
QUEUES = "compaction,expiration,orphans,metadata,control"


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _config(batch: int, linger: float) -> str:
    return (
        "[bandwidth]\nobject_store_bytes_per_second = 1000000000\nlifecycle_share = 1.0\n"
        f"[compaction]\ncommit_batch_max_groups = {batch}\ncommit_linger_seconds = {linger}\n"
        f'[tables."{TABLE}"]\nsmall_file_bytes = 200000\nmin_small_files = 3\ntarget_file_bytes = 4000000\n')


def _metric(text: str, name: str) -> float:
    """Sum of the samples of `name` (or of the one sample `name{labels}` when labels are given)."""
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
               if line.split(" ")[0] == name or ("{" not in name and line.startswith(name + "{")))


def _runs(db_url: str) -> list[dict[str, Any]]:
    with psycopg.connect(db_url) as conn:
        cur = conn.execute("SELECT partition, state, attempts, counts FROM job_runs WHERE job = 'compact'")
        return [{"partition": p, "state": s, "attempts": a, "counts": c} for p, s, a, c in cur.fetchall()]


def _peak_metadata_bytes(table: Any) -> int:
    root = Path(table.location().removeprefix("file://")) / "metadata"
    return max((p.stat().st_size for p in root.glob("*.metadata.json")), default=0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--partitions", type=int, default=12)
    ap.add_argument("--files", type=int, default=52)
    ap.add_argument("--workers", type=int, default=6, help="worker processes (celery worker -c)")
    ap.add_argument("--batch", type=int, default=50, help="[compaction] commit_batch_max_groups")
    ap.add_argument("--linger", type=float, default=5.0, help="[compaction] commit_linger_seconds")
    ap.add_argument("--redis", default="redis://127.0.0.1:6379", help="Redis server (the database is --redis-db)")
    ap.add_argument("--redis-db", type=int, default=12)
    ap.add_argument("--db", default="postgresql://postgres@127.0.0.1:5432/postgres")
    ap.add_argument("--timeout", type=float, default=3600)
    args = ap.parse_args()
    if min(args.partitions, args.files, args.workers, args.batch) < 1:
        ap.error("--partitions, --files, --workers and --batch must be at least 1")
    from bench.workspace import workspace

    ws = workspace("fleet", args.db, args.redis, args.redis_db, _config(args.batch, args.linger), data_subdir="data")
    work, db_url, config, r = ws.work, ws.db_url, ws.config, ws.redis()
    from lifecycle.clock import SystemClock
    from lifecycle.iceberg.catalog import open_catalog
    from lifecycle.settings import load
    from lifecycle.state.store import StateStore
    from lifecycle_cli.synth import ArchiveSpec, build_archive

    env = {**os.environ, "LIFECYCLE_CONFIG": str(config), "PYTHONUNBUFFERED": "1"}
    settings = load(env=env)
    StateStore(db_url, SystemClock()).close()
    t0 = time.perf_counter()
    parts = [(f"mission-{i % 10}", date(2024, 1, 1) + timedelta(days=i // 10)) for i in range(args.partitions)]
    build_archive(open_catalog(settings), ArchiveSpec(partitions=parts, files_per_partition=args.files,
                                                      file_bytes=(8_000, 16_000)), SystemClock())
    build_s = time.perf_counter() - t0
    table = open_catalog(settings).load_table(TABLE)
    snapshots_before, rows_before = len(table.metadata.snapshots), table.scan().to_arrow().num_rows
    metadata_before = _peak_metadata_bytes(table)

    port, heartbeat = _port(), work / "heartbeat"
    (work / "prom").mkdir(exist_ok=True)   # the workspace made it
    log = (work / "worker.log").open("wb")
    worker = subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "workers.app", "worker", "-Q", QUEUES, "-c", str(args.workers),
         "-P", "prefork", "-n", f"bench{uuid.uuid4().hex[:6]}@%h", "--without-gossip", "--without-mingle",
         "-l", "INFO"],
        cwd=REPO, env={**env, "LIFECYCLE_METRICS_PORT": str(port), "LIFECYCLE_HEARTBEAT_FILE": str(heartbeat),
                       "LIFECYCLE_HEARTBEAT_SECONDS": "1", "PROMETHEUS_MULTIPROC_DIR": str(work / "prom")},
        stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + 120
        while not heartbeat.exists():
            if worker.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"the worker did not start; see {work / 'worker.log'}")
            time.sleep(0.2)
        t0 = time.perf_counter()
        out = subprocess.run([sys.executable, "-m", "lifecycle_cli", "enqueue", "compact", "--table", TABLE],
                             env=env, cwd=REPO, capture_output=True, text=True, timeout=300)
        if out.returncode != 0:
            raise SystemExit(f"enqueue failed: {out.stderr.strip()}")
        deadline = time.monotonic() + args.timeout
        last_change, seen = time.monotonic(), ""
        while True:
            runs = _runs(db_url)
            if len(runs) >= args.partitions and all(x["state"] in ("done", "failed") for x in runs):
                break
            if repr(sorted((x["partition"], x["state"]) for x in runs)) != seen:
                seen, last_change = repr(sorted((x["partition"], x["state"]) for x in runs)), time.monotonic()
            drained = all(r.llen(q) == 0 for q in QUEUES.split(",")) and r.hlen("unacked") == 0
            if drained and time.monotonic() - last_change > 30:   # a run whose state connection was cut stays
                break                                             # `running` until the reaper: not waited for
            if time.monotonic() > deadline:
                raise SystemExit(f"timed out: {len(runs)} runs, see {work / 'worker.log'}")
            time.sleep(0.5)
        elapsed = time.perf_counter() - t0
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=30) as resp:
            metrics = resp.read().decode()
    finally:
        os.killpg(worker.pid, signal.SIGKILL)
        worker.wait(timeout=30)
    table = table.refresh()
    new = table.metadata.snapshots[snapshots_before:]
    compactions = [s for s in new if (s.summary or {}).get("lifecycle.job") == "compact"]
    files: dict[str, int] = {}
    for task in table.scan().plan_files():
        files[str(task.file.partition)] = files.get(str(task.file.partition), 0) + 1
    compacted = sum(1 for n in files.values() if n == 1)
    abandoned = sum(int((x["counts"] or {}).get("groups_abandoned", 0)) for x in runs)
    committed = sum(int((x["counts"] or {}).get("groups_committed", 0)) for x in runs)
    failed = sum(1 for x in runs if x["state"] == "failed")
    stuck = sum(1 for x in runs if x["state"] not in ("done", "failed"))
    retries = _metric(metrics, "lifecycle_commit_retries_total")
    rows_ok = table.scan().to_arrow().num_rows == rows_before
    effective = min(args.batch, args.workers)
    print(f"table: {args.partitions} partitions x {args.files} files, built in {build_s:.1f} s;"
          f" worker: -c {args.workers}; batch {args.batch}, linger {args.linger} s")
    print(f"elapsed (enqueue -> every run finished): {elapsed:.1f} s")
    print(f"partitions compacted: {compacted}/{args.partitions}"
          f" ({compacted / (elapsed / 60):.1f} partitions/min); runs failed: {failed}, left running: {stuck};"
          f" rows exact: {rows_ok}")
    print(f"groups committed: {committed}; groups abandoned: {abandoned}")
    print(f"snapshots created: {len(compactions)} (bound ceil(P / min(batch, W)) ="
          f" {math.ceil(args.partitions / effective)}; other snapshots: {len(new) - len(compactions)})")
    commit_s = _metric(metrics, 'lifecycle_commit_duration_seconds_sum{job="compact"}')
    commit_n = _metric(metrics, 'lifecycle_commit_duration_seconds_count{job="compact"}')
    print(f"commit retries: {retries:.0f}; commit time: {commit_s:.1f} s in {commit_n:.0f} commits"
          f" ({commit_s / max(commit_n, 1):.2f} s each)")
    print(f"peak metadata file: {_peak_metadata_bytes(table):,} bytes (before the run: {metadata_before:,})")
    print(re.sub(r"\s+", " ", f"worker log: {work / 'worker.log'}"))
    ws.close()


if __name__ == "__main__":
    main()
