"""Bounded memory on the control queue: compaction fan-out planning over 1M live files, and the reaper's pruning
of 1M old journal rows, each measured as the peak RSS of a fresh process (the control pods' limit is 1536 MiB,
deploy/k8s/base/workers/control.yaml).

Builds a table whose current snapshot references --files live data files (synthetic manifest entries in
--commits fast appends: planning reads manifests, never data), then in fresh subprocesses:
- `census`: today's fan-out (lifecycle.compaction.fanout.fanout_plan, streamed per manifest);
- `live_files`: the previous fan-out's input (every live DataFile held at once), for comparison;
- `prune`: lifecycle.state.prune over --journal-rows journal rows (and --runs job runs) older than the retention.

    python bench/state_bounds.py --files 1000000 --partitions 20000 --journal-rows 1000000
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import psycopg

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
TABLE = "archive.sda_observations"


def peak_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def build_table(settings: object, files: int, partitions: int, commits: int) -> None:
    from pyiceberg.manifest import DataFile, DataFileContent, FileFormat
    from pyiceberg.typedef import Record

    from lifecycle.iceberg.catalog import open_catalog
    from lifecycle_cli.synth import ArchiveSpec, create_table, synth_lineage

    table = create_table(open_catalog(settings), ArchiveSpec(partitions=[]))  # type: ignore[arg-type]
    loc = table.location().rstrip("/")
    base, epoch = date(2020, 1, 1), date(1970, 1, 1)
    per_commit = files // commits
    for c in range(commits):
        with (table.transaction() as tx,
              tx.update_snapshot(snapshot_properties=synth_lineage()).fast_append() as fa):
            for i in range(c * per_commit, (c + 1) * per_commit):
                p = i % partitions
                df = DataFile.from_args(
                    content=DataFileContent.DATA, file_path=f"{loc}/data/{uuid.uuid4().hex}.parquet",
                    file_format=FileFormat.PARQUET,
                    partition=Record(f"mission-{p % 10}", (base + timedelta(days=p // 10) - epoch).days),
                    record_count=1000, file_size_in_bytes=1_000_000 + (i % 7) * 10_000_000)
                df.spec_id = 0
                fa.append_data_file(df)
        table = table.refresh()
        print(f"  commit {c + 1}/{commits}: {(c + 1) * per_commit} files", file=sys.stderr, flush=True)


def fill_state(db: str, journal_rows: int, runs: int, plans: int) -> None:
    old = datetime(2020, 1, 1, tzinfo=UTC)
    with psycopg.connect(db, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO plans (plan_id, job, table_name, partition, state, payload, progress, created_at,"
            " updated_at) SELECT 'p' || g, 'compact', %s, '', 'done', '{}', '{}', %s, %s"
            " FROM generate_series(1, %s) g", (TABLE, old, old, plans))
        conn.execute(
            "INSERT INTO journal (plan_id, table_name, kind, path, state, bytes, info, created_at, updated_at)"
            " SELECT 'p' || (1 + g %% %s), %s, 'stage', 's3://bucket/warehouse/data/' || md5(g::text) || '.parquet',"
            " 'committed', 1000000, '{}', %s, %s FROM generate_series(1, %s) g",
            (plans, TABLE, old, old, journal_rows))
        conn.execute(
            "INSERT INTO job_runs (run_id, job, table_name, partition, state, manual, created_at, finished_at)"
            " SELECT 'r' || g, 'compact', %s, 'p=' || g, 'done', false, %s, %s FROM generate_series(1, %s) g",
            (TABLE, old, old, runs))


def measure(what: str) -> dict[str, float]:
    from lifecycle.settings import load

    settings = load()
    t0 = time.perf_counter()
    if what in ("census", "live_files"):
        from lifecycle.iceberg.catalog import open_catalog

        table = open_catalog(settings).load_table(TABLE)
        base = peak_mib()
        if what == "census":
            from lifecycle.compaction.fanout import fanout_plan

            parts, backlog = fanout_plan(table, TABLE, settings.for_table(TABLE))
            out = {"candidates": len(parts), "backlog": backlog}
        else:
            from lifecycle.compaction.scan import live_files

            _sid, found = live_files(table)
            out = {"partitions": len(found), "files": sum(len(f.files) for f in found.values())}
    else:
        from lifecycle.clock import SystemClock
        from lifecycle.state.prune import prune
        from lifecycle.state.store import StateStore

        store = StateStore(settings.state.database_url, SystemClock())
        base = peak_mib()
        totals: dict[str, int] = {}
        while True:
            done = prune(store, settings)
            for k, v in done.items():
                totals[k] = totals.get(k, 0) + v
            if not any(done.values()):
                break
        out = dict(totals)
    return {**out, "seconds": round(time.perf_counter() - t0, 1), "peak_rss_mib": round(peak_mib(), 1),
            "rss_before_mib": round(base, 1)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--files", type=int, default=1_000_000)
    ap.add_argument("--partitions", type=int, default=20_000)
    ap.add_argument("--commits", type=int, default=20)
    ap.add_argument("--journal-rows", type=int, default=1_000_000)
    ap.add_argument("--runs", type=int, default=200_000)
    ap.add_argument("--plans", type=int, default=2_000)
    ap.add_argument("--db", default="postgresql://postgres@127.0.0.1:5432/postgres")
    ap.add_argument("--measure", choices=("census", "live_files", "prune"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.measure:
        print(json.dumps(measure(args.measure)))
        return
    work = Path(tempfile.mkdtemp(prefix="lifecycle-bounds-"))
    dbname = f"bounds_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(args.db, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{dbname}"')
    db = f"{args.db.rsplit('/', 1)[0]}/{dbname}"
    config = work / "lifecycle.toml"
    config.write_text(f'[state]\ndatabase_url = "{db}"\ndata_dir = "{work}"\nhistory_retention_days = 30\n'
                      "[defaults]\nmin_small_files = 20\n")
    os.environ["LIFECYCLE_CONFIG"] = str(config)
    try:
        from lifecycle.clock import SystemClock
        from lifecycle.settings import load
        from lifecycle.state.store import StateStore

        settings = load()
        StateStore(db, SystemClock()).close()
        t0 = time.perf_counter()
        build_table(settings, args.files, args.partitions, args.commits)
        print(f"table: {args.files:,} live files in {args.partitions:,} partitions, {args.commits} manifests,"
              f" built in {time.perf_counter() - t0:.0f} s")
        fill_state(db, args.journal_rows, args.runs, args.plans)
        print(f"state: {args.journal_rows:,} journal rows of {args.plans:,} finished plans and {args.runs:,} job"
              " runs, all older than the retention")
        for what in ("census", "live_files", "prune"):
            out = subprocess.run([sys.executable, __file__, "--measure", what], env=os.environ, capture_output=True,
                                 text=True, check=True, cwd=REPO)
            print(f"{what}: {out.stdout.strip().splitlines()[-1]}")
    finally:
        with psycopg.connect(args.db, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{dbname}" WITH (FORCE)')


if __name__ == "__main__":
    main()
