"""Expiration planning time, cold and warm, beside PyIceberg's `inspect.all_files()` on the same table.

    .venv/bin/python bench/expiration.py                     # 1,000 snapshots
    .venv/bin/python bench/expiration.py --snapshots 1000 3000 --workdir /tmp/exp-bench

Tables come from `lifecycle_cli.synth` (N back-dated snapshots over 60 days, every 5th one rewriting an earlier
file, so an N-snapshot table has ~0.4·N² manifest-list entries). A built table is reused from --workdir.
"Cold" is a fresh process-level cache (every manifest list and manifest read and decoded); "warm" is the
same cache again, as in a long-lived worker running its daily expiration. Planning = retention selection +
reachable-before − reachable-after + the per-file snapshot attribution the cold-tier catalog records.
"""

from __future__ import annotations

import argparse
import random
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from pyiceberg.catalog.sql import SqlCatalog
from pyiceberg.manifest import (
    DataFile,
    DataFileContent,
    FileFormat,
    ManifestEntry,
    ManifestEntryStatus,
    write_manifest_list,
)
from pyiceberg.serializers import ToOutputFile
from pyiceberg.table.metadata import SnapshotLogEntry
from pyiceberg.table.refs import SnapshotRef, SnapshotRefType
from pyiceberg.table.snapshots import Operation, Snapshot, Summary
from pyiceberg.typedef import Record

from lifecycle.clock import ManualClock, to_millis
from lifecycle.expiration.plan import plan_expiration
from lifecycle.expiration.retention import Retention, select_expired
from lifecycle.iceberg.reachability import ManifestCache, reachable_from
from lifecycle.iceberg.reachability_cache import PersistentManifestCache
from lifecycle_cli.synth import ArchiveSpec, _write_manifest, build_archive, create_table, synth_lineage

NOW = datetime(2026, 11, 26, 2, 0, tzinfo=UTC)
TABLE = "archive.sda_observations"


def merged_history(catalog: Any, table: Any, n: int, window: int) -> None:
    """N snapshots (one registered metadata file) whose manifest lists carry only the newest `window`
    manifests (the shape of a table with manifest merging or weekly manifest rewrites): list entries grow as
    N·window, not N²/2. Data files are manifest entries only (planning never opens them)."""
    meta = table.metadata
    base = table.location().rstrip("/")
    rng = random.Random(11)
    start = NOW - timedelta(days=60)
    step = timedelta(days=60) / n
    seq, parent = meta.last_sequence_number, meta.current_snapshot_id
    window_manifests: list[Any] = []
    snapshots: list[Snapshot] = []
    for i in range(n):
        seq += 1
        sid = rng.randrange(1, 2**63 - 1)
        df = DataFile.from_args(content=DataFileContent.DATA, file_format=FileFormat.PARQUET,
                                file_path=f"{base}/data/mission_id=apollo-7/day=2024-03-15/m-{i:06d}.parquet",
                                partition=Record("apollo-7", 19797), record_count=2, file_size_in_bytes=2048)
        entry = ManifestEntry.from_args(status=ManifestEntryStatus.ADDED, snapshot_id=sid, sequence_number=seq,
                                        file_sequence_number=seq, data_file=df)
        manifest = _write_manifest(table, meta, sid, [entry], base, deleted=False)
        window_manifests = [*window_manifests[-(window - 1):], manifest]
        list_path = f"{base}/metadata/snap-{sid}-1-{uuid.uuid4()}.avro"
        with write_manifest_list(format_version=2, output_file=table.io.new_output(list_path), snapshot_id=sid,
                                 parent_snapshot_id=parent, sequence_number=seq, avro_compression="deflate") as w:
            w.add_manifests(window_manifests)
        snapshots.append(Snapshot(snapshot_id=sid, parent_snapshot_id=parent, sequence_number=seq,
                                  timestamp_ms=to_millis(start + step * i), manifest_list=list_path,
                                  summary=Summary(operation=Operation.APPEND, **synth_lineage()),
                                  schema_id=meta.current_schema_id))
        parent = sid
    # One metadata file written directly and registered: applying 2·N updates in one commit is quadratic.
    new_meta = meta.model_copy(update={
        "snapshots": snapshots, "current_snapshot_id": parent, "last_sequence_number": seq,
        "refs": {"main": SnapshotRef(snapshot_id=parent, type=SnapshotRefType.BRANCH)},
        "snapshot_log": [SnapshotLogEntry(snapshot_id=s.snapshot_id, timestamp_ms=s.timestamp_ms) for s in snapshots],
        "last_updated_ms": snapshots[-1].timestamp_ms,
    })
    location = f"{base}/metadata/00001-{uuid.uuid4()}.metadata.json"
    ToOutputFile.table_metadata(new_meta, table.io.new_output(location))
    catalog.drop_table(TABLE)
    catalog.register_table(TABLE, location)


def table_with(n: int, workdir: Path, shape: str, window: int) -> Any:
    root = workdir / f"{shape}-{n}"
    root.mkdir(parents=True, exist_ok=True)
    catalog = SqlCatalog("archive", uri=f"sqlite:///{root / 'cat.db'}", warehouse=f"file://{root / 'wh'}")
    if catalog.table_exists(TABLE):
        return catalog.load_table(TABLE)
    started = time.perf_counter()
    if shape == "merged":
        merged_history(catalog, create_table(catalog, ArchiveSpec()), n, window)
        print(f"  built {n} snapshots ({shape}, window {window}) in {time.perf_counter() - started:.1f} s")
        return catalog.load_table(TABLE)
    spec = ArchiveSpec(files_per_partition=2, file_bytes=(20_000, 40_000), history_snapshots=n,
                       tags={"launch": n // 25, "audit": n // 4})
    build_archive(catalog, spec, ManualClock(NOW))
    print(f"  built {n} snapshots in {time.perf_counter() - started:.1f} s")
    return catalog.load_table(TABLE)


def bench(n: int, workdir: Path, repeat: int, shape: str, window: int) -> dict[str, float]:
    table = table_with(n, workdir, shape, window)
    meta = table.metadata
    io = table.io
    selection = select_expired(meta, NOW, Retention(30, 1))
    out: dict[str, float] = {"snapshots": len(meta.snapshots), "expired": len(selection.expire_ids)}
    colds, warms = [], []
    for _ in range(repeat):
        cache = ManifestCache()
        started = time.perf_counter()
        plan = plan_expiration(TABLE, io, meta, table.metadata_location, selection, cache)
        colds.append(time.perf_counter() - started)
        started = time.perf_counter()
        plan_expiration(TABLE, io, meta, table.metadata_location, selection, cache)
        warms.append(time.perf_counter() - started)
    out["plan_cold_s"] = min(colds)
    out["plan_warm_s"] = min(warms)
    # A new process with the persistent cache filled by an earlier run: nothing is read, only loaded.
    db = workdir / f"cache-{n}-{time.time_ns()}.sqlite"
    plan_expiration(TABLE, io, meta, table.metadata_location, selection, PersistentManifestCache(db))
    started = time.perf_counter()
    plan_expiration(TABLE, io, meta, table.metadata_location, selection, PersistentManifestCache(db))
    out["plan_disk_warm_s"] = time.perf_counter() - started
    for leftover in workdir.glob(f"{db.name}*"):
        leftover.unlink()
    out["files_to_purge"] = len(plan.files)
    cache = ManifestCache()
    started = time.perf_counter()
    reach = reachable_from(io, meta, meta.snapshots, cache)
    out["reachable_all_cold_s"] = time.perf_counter() - started
    out["list_entries"] = sum(len(cache.manifest_list(io, s.manifest_list)) for s in meta.snapshots)
    started = time.perf_counter()
    files = table.inspect.all_files()
    out["inspect_all_files_s"] = time.perf_counter() - started
    out["all_files_rows"] = files.num_rows
    out["reachable_data_files"] = len(reach.data_files)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--snapshots", type=int, nargs="+", default=[1000])
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/lifecycle-bench-expiration"))
    parser.add_argument("--repeat", type=int, default=3, help="cold/warm pairs; the best of each is shown")
    parser.add_argument("--shape", choices=["synth", "merged"], default="synth",
                        help="synth: lifecycle_cli.synth's append history (N²/2 list entries); merged: bounded lists")
    parser.add_argument("--window", type=int, default=50, help="manifests per list for --shape merged")
    args = parser.parse_args()
    print(f"shape: {args.shape}" + (f", {args.window} manifests per list" if args.shape == "merged" else ""))
    print("| snapshots | expired | list entries | plan cold (s) | plan warm (s) "
          "| plan, new process, persistent cache (s) | reachable_from all, cold (s) | inspect.all_files() (s) "
          "| files to purge |")
    print("|---|---|---|---|---|---|---|---|---|")
    for n in args.snapshots:
        r = bench(n, args.workdir, args.repeat, args.shape, args.window)
        print(f"| {int(r['snapshots'])} | {int(r['expired'])} | {int(r['list_entries'])} | {r['plan_cold_s']:.2f} "
              f"| {r['plan_warm_s']:.3f} | {r['plan_disk_warm_s']:.2f} | {r['reachable_all_cold_s']:.2f} "
              f"| {r['inspect_all_files_s']:.2f} | {int(r['files_to_purge'])} |", flush=True)


if __name__ == "__main__":
    main()
