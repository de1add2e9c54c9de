"""Purge on a large table in bounded memory: N live files, M eligible purge-journal rows.

Builds (once, under --root) a table whose current snapshot holds N live data files (manifests written directly;
the data files need not exist), and a fresh PostgreSQL database with M eligible purge rows naming files that are
already gone (so purge walks every row through the live-set check and the journal, without copying). Then runs
purge in a fresh process and prints its wall time and peak RSS.

    python bench/purge_memory.py --live 1000000 --rows 1000000

Needs PostgreSQL on 127.0.0.1:5432 (trust), as the tests do.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg

PG = "postgresql://postgres@127.0.0.1:5432/postgres"
TABLE = "bench.purge"
PER_MANIFEST = 20_000


def _catalog(root: Path) -> Any:
    from pyiceberg.catalog.sql import SqlCatalog

    return SqlCatalog("archive", uri=f"sqlite:///{root / 'catalog.db'}", warehouse=f"file://{root / 'wh'}")


def build_table(root: Path, live: int) -> None:
    from pyiceberg.manifest import (
        DataFile,
        DataFileContent,
        FileFormat,
        ManifestEntry,
        ManifestEntryStatus,
        write_manifest,
        write_manifest_list,
    )
    from pyiceberg.table.snapshots import Operation, Snapshot, Summary
    from pyiceberg.table.update import AddSnapshotUpdate, AssertRefSnapshotId, SetSnapshotRefUpdate
    from pyiceberg.typedef import Record

    from lifecycle_cli.synth import ArchiveSpec, create_table, synth_lineage

    (root / "wh").mkdir(parents=True, exist_ok=True)
    catalog = _catalog(root)
    catalog.create_namespace_if_not_exists("bench")
    table = create_table(catalog, ArchiveSpec(name="purge", namespace="bench"))
    meta = table.metadata
    base = table.location().rstrip("/")
    snapshot_id, seq = 1, meta.last_sequence_number + 1
    manifests = []
    for start in range(0, live, PER_MANIFEST):
        path = f"{base}/metadata/{uuid.uuid4()}-m0.avro"
        with write_manifest(format_version=2, spec=meta.spec(), schema=meta.schema(),
                            output_file=table.io.new_output(path), snapshot_id=snapshot_id,
                            avro_compression="deflate") as writer:
            for i in range(start, min(live, start + PER_MANIFEST)):
                df = DataFile.from_args(content=DataFileContent.DATA,
                                        file_path=f"{base}/data/mission_id=m/day=2024-03-15/live-{i:08d}.parquet",
                                        file_format=FileFormat.PARQUET, partition=Record("m", 19797),
                                        record_count=10, file_size_in_bytes=1000)
                df.spec_id = meta.default_spec_id
                writer.add_entry(ManifestEntry.from_args(status=ManifestEntryStatus.ADDED, snapshot_id=snapshot_id,
                                                         data_file=df))
        manifests.append(writer.to_manifest_file())
    list_path = f"{base}/metadata/snap-{snapshot_id}-1-{uuid.uuid4()}.avro"
    with write_manifest_list(format_version=2, output_file=table.io.new_output(list_path), snapshot_id=snapshot_id,
                             parent_snapshot_id=None, sequence_number=seq, avro_compression="deflate") as lw:
        lw.add_manifests(manifests)
    snap = Snapshot(snapshot_id=snapshot_id, parent_snapshot_id=None, sequence_number=seq,
                    timestamp_ms=meta.last_updated_ms + 1, manifest_list=list_path,
                    summary=Summary(Operation.APPEND, **synth_lineage()), schema_id=meta.current_schema_id)
    table.catalog.commit_table(table, (AssertRefSnapshotId(ref="main", snapshot_id=None),),
                               (AddSnapshotUpdate(snapshot=snap),
                                SetSnapshotRefUpdate(ref_name="main", type="branch", snapshot_id=snapshot_id)))


def fill_journal(url: str, location: str, rows: int) -> None:
    from lifecycle.clock import SystemClock
    from lifecycle.state.store import StateStore

    store = StateStore(url, SystemClock())   # runs the migrations
    plan = store.create_plan("expire", TABLE, "", {"expire_ids": []}, None)
    store.close()
    past = datetime.now(UTC) - timedelta(days=2)
    with psycopg.connect(url) as conn, conn.cursor() as cur, cur.copy(
            "COPY journal (plan_id, table_name, kind, path, state, bytes, eligible_at, info, created_at, updated_at)"
            " FROM STDIN") as copy:
        for i in range(rows):
            copy.write_row((plan.plan_id, TABLE, "purge", f"{location}/data/mission_id=m/day=2024-03-15/dead-{i:08d}"
                            ".parquet", "pending", 1000, past, json.dumps({"file": "data"}), past, past))


def run_purge(root: Path, url: str) -> dict[str, Any]:
    from lifecycle.bandwidth import TokenBucket
    from lifecycle.clock import SystemClock
    from lifecycle.expiration.purge import run_purge as purge
    from lifecycle.jobs.base import JobContext, JobRequest
    from lifecycle.settings import from_mapping
    from lifecycle.state.store import StateStore

    settings = from_mapping({"state": {"database_url": url, "data_dir": str(root / "data")}}, env={})
    store = StateStore(url, SystemClock())
    ctx = JobContext(settings=settings, catalog=_catalog(root), store=store, clock=SystemClock(),
                     limiter=TokenBucket(10**12), db_url=url)
    base_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    started = time.monotonic()
    result = purge(ctx, JobRequest("purge", TABLE))
    return {"seconds": round(time.monotonic() - started, 1), "counts": result.counts,
            "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
            "rss_before_mib": round(base_rss)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--live", type=int, default=1_000_000)
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--root", default=None, help="folder for the table (kept; reused when it exists)")
    ap.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        print(json.dumps(run_purge(Path(args.child[0]), args.child[1])))
        return
    root = Path(args.root or tempfile.mkdtemp(prefix="purge-bench-"))
    t0 = time.monotonic()
    if (root / "catalog.db").exists():
        print(f"reusing the table under {root}")
    else:
        build_table(root, args.live)
        print(f"built {args.live:,} live files under {root} in {time.monotonic() - t0:.0f} s")
    location = _catalog(root).load_table(TABLE).location().rstrip("/")
    name = f"purge_bench_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(PG, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    url = PG.rsplit("/", 1)[0] + f"/{name}"
    try:
        fill_journal(url, location, args.rows)
        print(f"{args.rows:,} purge rows written")
        out = subprocess.run([sys.executable, __file__, "--child", str(root), url], capture_output=True,
                             text=True, check=True)
        figures = json.loads(out.stdout.strip().splitlines()[-1])
        print(f"purge: {figures['seconds']} s, peak RSS {figures['peak_rss_mib']} MiB"
              f" (interpreter and imports {figures['rss_before_mib']} MiB); counts {figures['counts']}")
    finally:
        with psycopg.connect(PG, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


if __name__ == "__main__":
    main()
