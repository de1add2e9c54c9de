"""Fan-out: beat's compaction planning and enqueueing for many partitions (target: 10,000 in < 10 s).

Builds a table whose current snapshot has --partitions partitions of --files small files each (manifest
entries only: planning reads manifests, never data), then times what the `control` queue's planning task
does: find the candidate partitions and send one message per partition to the `compaction` queue on a real
Redis broker (loopback; database 12, flushed before and after).

    python bench/fanout.py --partitions 10000 --files 2
"""

from __future__ import annotations

import argparse
import sys
import time
import uuid
from datetime import date, timedelta
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))


def build_table(catalog: object, partitions: int, files: int, name: str = "sda_observations") -> object:
    from pyiceberg.manifest import DataFile, DataFileContent, FileFormat
    from pyiceberg.typedef import Record

    from lifecycle_cli.synth import ArchiveSpec, create_table, synth_lineage

    table = create_table(catalog, ArchiveSpec(name=name, partitions=[]))  # type: ignore[arg-type]
    base = date(2020, 1, 1)
    epoch = date(1970, 1, 1)
    loc = table.location().rstrip("/")  # type: ignore[attr-defined]
    with (
        table.transaction() as tx,  # type: ignore[attr-defined]
        tx.update_snapshot(snapshot_properties=synth_lineage()).fast_append() as fa,
    ):
        for i in range(partitions):
            mission, day = f"mission-{i % 10}", base + timedelta(days=i // 10)
            for _ in range(files):
                df = DataFile.from_args(
                    content=DataFileContent.DATA, file_path=f"{loc}/data/{uuid.uuid4().hex}.parquet",
                    file_format=FileFormat.PARQUET, partition=Record(mission, (day - epoch).days),
                    record_count=1000, file_size_in_bytes=1_000_000)
                df.spec_id = 0
                fa.append_data_file(df)
    return table.refresh()  # type: ignore[attr-defined]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--partitions", type=int, default=10_000)
    ap.add_argument("--files", type=int, default=2)
    ap.add_argument("--redis-db", type=int, default=12)
    ap.add_argument("--redis", default="redis://127.0.0.1:6379", help="Redis server (the database is --redis-db)")
    ap.add_argument("--db", default="postgresql://postgres@127.0.0.1:5432/postgres")
    args = ap.parse_args()
    from bench.workspace import workspace

    ws = workspace("fanout", args.db, args.redis, args.redis_db, f"[defaults]\nmin_small_files = {args.files}\n")
    r = ws.redis()
    from lifecycle.iceberg.catalog import open_catalog
    from lifecycle.settings import load

    settings = load()
    t0 = time.perf_counter()
    table = build_table(open_catalog(settings), args.partitions, args.files)
    build_s = time.perf_counter() - t0
    from lifecycle.compaction.fanout import candidate_partitions
    from workers.tasks import FANOUT_BATCH, _plan_compaction, send_job

    ts = settings.for_table("archive.sda_observations")
    t0 = time.perf_counter()
    parts = candidate_partitions(table, "archive.sda_observations", ts)
    plan_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    from workers.app import app

    with app.producer_or_acquire() as producer, producer.batch(max_size=FANOUT_BATCH):
        for p in parts:
            send_job("compact", "archive.sda_observations", p, manual=True, producer=producer)
    send_s = time.perf_counter() - t0
    queued = r.llen("compaction")
    r.flushdb()
    t0 = time.perf_counter()
    from lifecycle.jobs.admission import PLAN, sign_message

    auth = sign_message(settings, PLAN, "archive.sda_observations", None, True, None)  # as lifecycle-cli enqueue
    ids = _plan_compaction(None, "archive.sda_observations", manual=True, auth=auth)
    task_s = time.perf_counter() - t0
    queued_task = r.llen("compaction")
    r.flushdb()
    print(f"table build: {args.partitions} partitions x {args.files} files in {build_s:.1f} s")
    print(f"candidate planning: {len(parts)} partitions in {plan_s:.2f} s")
    print(f"enqueue: {queued} messages in {send_s:.2f} s ({queued / send_s:,.0f} msg/s)")
    print(f"planning task end to end (backlog gauge + plan + enqueue): {len(ids)} tasks, "
          f"{queued_task} queued, {task_s:.2f} s (target < 10 s)")
    ws.close()


if __name__ == "__main__":
    main()
