"""Beat's fan-out for many tables: 1,000 tables x 10 partitions (target: tick to every message sent < 60 s).

Builds --tables tables in the SQL catalog, each with --partitions partitions of --files small files (manifest
entries only, as bench/fanout.py builds them: planning reads manifests, never data). Then, on a real Redis
broker (database --redis-db, flushed before and after):

1. beat's schedule is built for every table (beat_schedule.build_schedule) and Celery's own beat scheduler
   ticks until every due entry is sent: beat only sends one planning message per table to `control`;
2. one real `celery worker -Q control -c W` runs the per-table planning tasks (workers/tasks.py
   _plan_compaction: admission, the streamed census of the table's manifests, one message per candidate
   partition to `compaction`, which nobody consumes here, so every message sent can be counted).

Prints beat's time to send every planning message, the planning cost per table (Celery's own "succeeded in"
time of each planning task, median / p95 / max), and the time from the tick to every partition message sent.
The clock of beat and the worker is shifted to 20:00 UTC (LIFECYCLE_FAKE_NOW), outside the compaction pause.

    .venv/bin/python bench/beat_fanout.py --tables 1000 --partitions 10 --files 2 --workers 2
"""

from __future__ import annotations

import argparse
import os
import re
import signal
import statistics
import subprocess
import sys
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
FAKE_NOW = datetime.now(UTC).replace(hour=20, minute=0, second=0, microsecond=0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tables", type=int, default=1000)
    ap.add_argument("--partitions", type=int, default=10)
    ap.add_argument("--files", type=int, default=2)
    ap.add_argument("--workers", type=int, default=2, help="worker processes running the planning tasks")
    ap.add_argument("--redis", default="redis://127.0.0.1:6379", help="Redis server (the database is --redis-db)")
    ap.add_argument("--redis-db", type=int, default=11)
    ap.add_argument("--db", default="postgresql://postgres@127.0.0.1:5432/postgres")
    ap.add_argument("--timeout", type=float, default=900)
    args = ap.parse_args()
    if min(args.tables, args.partitions, args.files, args.workers) < 1:
        ap.error("--tables, --partitions, --files and --workers must be at least 1")
    from bench.workspace import workspace

    ws = workspace("beat-fanout", args.db, args.redis, args.redis_db,
                   f"[defaults]\nmin_small_files = {args.files}\n")
    work, r = ws.work, ws.redis()
    from bench.fanout import build_table
    from lifecycle.iceberg.catalog import open_catalog
    from lifecycle.settings import load

    settings = load()
    catalog = open_catalog(settings)
    t0 = time.perf_counter()
    tables = [f"archive.t{i:05d}" for i in range(args.tables)]
    for name in tables:
        build_table(catalog, args.partitions, args.files, name=name.split(".", 1)[1])
    build_s = time.perf_counter() - t0
    print(f"tables built: {args.tables} x {args.partitions} partitions x {args.files} files in {build_s:.1f} s",
          flush=True)

    env = {**os.environ, "LIFECYCLE_FAKE_NOW": FAKE_NOW.isoformat(), "PYTHONUNBUFFERED": "1"}
    heartbeat, log_path = work / "heartbeat", work / "worker.log"
    log = log_path.open("wb")
    worker = subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "workers.app", "worker", "-Q", "control", "-c", str(args.workers),
         "-P", "prefork", "-n", f"plan{uuid.uuid4().hex[:6]}@%h", "--without-gossip", "--without-mingle",
         "-l", "INFO"],
        cwd=REPO, env={**env, "LIFECYCLE_HEARTBEAT_FILE": str(heartbeat), "LIFECYCLE_HEARTBEAT_SECONDS": "1"},
        stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + 120
        while not heartbeat.exists():
            if worker.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"the worker did not start; see {log_path}")
            time.sleep(0.2)
        from celery.beat import Scheduler

        from beat_schedule import build_schedule
        from lifecycle.clock import OffsetClock
        from workers.app import app

        clock = OffsetClock(FAKE_NOW - datetime.now(UTC))
        t_sched = time.perf_counter()
        app.conf.beat_schedule = {k: v for k, v in build_schedule(settings, tables, clock).items()
                                  if k.startswith("compact ")}
        scheduler = Scheduler(app=app, lazy=False)
        sched_s = time.perf_counter() - t_sched
        due = sum(1 for e in scheduler.schedule.values() if e.name.startswith("compact ") and e.is_due()[0])
        t_tick = time.perf_counter()
        sent = 0
        while sent < due:             # Celery's beat loop: tick() sends one due entry and returns 0 while more are
            scheduler.tick()
            sent = sum(1 for e in scheduler.schedule.values() if e.name.startswith("compact ") and e.total_run_count)
        beat_s = time.perf_counter() - t_tick
        expected = args.tables * args.partitions
        deadline = time.monotonic() + args.timeout
        while r.llen("compaction") < expected:
            if time.monotonic() > deadline or worker.poll() is not None:
                raise SystemExit(f"timed out: {r.llen('compaction')}/{expected} partition messages; see {log_path}")
            time.sleep(0.05)
        total_s = time.perf_counter() - t_tick
    finally:
        os.killpg(worker.pid, signal.SIGKILL)
        worker.wait(timeout=30)
    costs = sorted(float(m) for m in re.findall(r"lifecycle\.plan-compaction\[[^\]]+\] succeeded in ([0-9.]+)s",
                                                  log_path.read_text(errors="replace")))
    print(f"beat schedule built: {len(scheduler.schedule)} entries in {sched_s:.2f} s")
    print(f"beat tick: {sent} planning messages sent in {beat_s:.2f} s")
    if costs:
        p95 = costs[min(len(costs) - 1, int(0.95 * len(costs)))]
        print(f"planning per table on the worker ({len(costs)} tasks, -c {args.workers}): median"
              f" {statistics.median(costs) * 1000:.0f} ms, p95 {p95 * 1000:.0f} ms, max {costs[-1] * 1000:.0f} ms")
    print(f"tick -> every partition message sent: {expected} messages in {total_s:.1f} s (target < 60 s)")
    ws.close()


if __name__ == "__main__":
    main()
