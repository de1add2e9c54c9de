"""Head to head with the reference implementation, Apache Iceberg Java 1.10 (Spark 3.5, local[2]), on the same
tables in one JDBC catalog: compaction (bin-pack, sort, Z-order) against `rewrite_data_files`, expiration
against `expire_snapshots`, the orphan scan against `remove_orphan_files(dry_run)`, at two sizes.

    scripts/interop-setup                                   # the reference's toolchain, once
    .venv/bin/python bench/reference.py --mb 100 355 --snapshots 100 300

Each compaction input is one partition of small zstd files (lifecycle_cli.synth, --file-mb sizes) registered
twice from the same metadata file: one copy compacted by us (the `compact` job, in this process, commit
included), one by `CALL rewrite_data_files` (commit included). CPU seconds are user+system of the process
doing the work (ours: this Python process, read with getrusage; the reference: the JVM, from /proc); wall is
the call. Throughput per core = input MB / CPU seconds. Every answer is compared: rows after compaction (count
and a checksum of payload_id), the snapshot ids each expiration removed, the files each orphan scan lists.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from lifecycle.jobs.base import JobRequest
from lifecycle.jobs.runtime import build_context, execute
from lifecycle.settings import from_mapping
from lifecycle_cli.synth import ArchiveSpec, build_archive
from tests.interop import spark as spark_mod
from tests.interop import toolchain

PG = os.environ.get("LIFECYCLE_TEST_PG", "postgresql://postgres@127.0.0.1:5432/postgres")
NS = "bench"
SORT_COLS = "sensor_kind, payload_id"
ZORDER_COLS = "payload_id, sensor_kind"
STRATEGIES = {
    "binpack": ("strategy => 'binpack'", None),
    "sort": (f"strategy => 'sort', sort_order => '{SORT_COLS}'", f"WRITE ORDERED BY {SORT_COLS}"),
    "zorder": (f"strategy => 'sort', sort_order => 'zorder({ZORDER_COLS})'",
               f"SET TBLPROPERTIES ('lifecycle.zorder-columns'='{ZORDER_COLS.replace(' ', '')}')"),
}
TARGET = 128 << 20


def _cpu_self() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def _cpu_pid(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def timed(fn: Callable[[], Any], cpu: Callable[[], float]) -> tuple[Any, float, float]:
    os.sync()
    c0, t0 = cpu(), time.monotonic()
    out = fn()
    return out, time.monotonic() - t0, cpu() - c0


class Bench:
    def __init__(self, work: Path, driver_memory: str) -> None:
        self.work = work
        self.db = f"lc_bench_ref_{uuid.uuid4().hex[:10]}"
        with psycopg.connect(PG, autocommit=True) as admin:
            admin.execute(f'CREATE DATABASE "{self.db}"')
        self.db_url = f"{PG.rsplit('/', 1)[0]}/{self.db}"
        warehouse = work / "warehouse"
        warehouse.mkdir(parents=True)
        self.root = spark_mod.start(driver_memory)
        self.spark = spark_mod.session_for(self.root, spark_mod.catalog_conf("127.0.0.1", 5432, self.db, "postgres",
                                                                             warehouse))
        self.jvm_pid = int(self.root.sparkContext._jvm.java.lang.ProcessHandle.current().pid())
        props = {"type": "sql", "uri": self.db_url.replace("postgresql://", "postgresql+psycopg://"),
                 "warehouse": warehouse.resolve().as_uri()}
        self.props = props
        for key, value in props.items():
            os.environ[f"PYICEBERG_CATALOG__{spark_mod.CATALOG.upper()}__{key.upper()}"] = value
        settings = from_mapping({"state": {"database_url": self.db_url, "data_dir": str(work / "data")},
                                 "defaults": {"small_file_bytes": 64 << 20, "min_small_files": 2,
                                              "target_file_bytes": TARGET, "retention_days": 0,
                                              "min_snapshots_to_keep": 1, "orphan_min_age_days": 7}}, env={})
        self.ctx = build_context(settings)
        self.profile: list[tuple[str, Any]] | None = None
        self.catalog = self.ctx.catalog
        self.sql(f"CREATE NAMESPACE IF NOT EXISTS {spark_mod.CATALOG}.{NS}")

    def close(self) -> None:
        self.ctx.store.close()
        self.root.stop()
        with psycopg.connect(PG, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{self.db}" WITH (FORCE)')

    def sql(self, q: str) -> list[Any]:
        return list(self.spark.sql(q).collect())

    def ours(self, job: str, table: str, dry_run: bool = False) -> tuple[Any, float, float]:
        def run() -> Any:
            return execute(self.ctx, JobRequest(job, table, dry_run=dry_run))

        if self.profile is None or job != "compact":
            return timed(run, _cpu_self)
        import cProfile

        prof = cProfile.Profile()
        out = timed(lambda: prof.runcall(run), _cpu_self)
        self.profile.append((table, prof))
        return out

    def reference(self, call: str) -> tuple[Any, float, float]:
        return timed(lambda: self.sql(call), lambda: _cpu_pid(self.jvm_pid))

    def register(self, name: str, metadata: str) -> str:
        self.sql(f"CALL {spark_mod.CATALOG}.system.register_table(table => '{NS}.{name}', "
                 f"metadata_file => '{metadata}')")
        return f"{NS}.{name}"

    def answer(self, table: str) -> tuple[int, int, int]:
        r = self.sql(f"SELECT count(*), sum(payload_id) FROM {spark_mod.CATALOG}.{table}")[0]
        files = self.sql(f"SELECT count(*) FROM {spark_mod.CATALOG}.{table}.files")[0][0]
        return int(r[0]), int(r[1] or 0), int(files)


def compaction(b: Bench, mb: float, file_mb: tuple[float, float], rows: list[dict[str, Any]],
               name: str = "base") -> None:
    n = max(2, round(mb / ((file_mb[0] + file_mb[1]) / 2)))
    spec = ArchiveSpec(namespace=NS, name=f"{name}_{int(mb)}", partitions=[("apollo-7", date(2024, 3, 15))],
                       files_per_partition=n, file_bytes=(int(file_mb[0] * 1e6), int(file_mb[1] * 1e6)))
    archive = build_archive(b.catalog, spec)
    base = archive.table
    in_bytes = sum(t.file.file_size_in_bytes for t in base.scan().plan_files())
    print(f"\n== {in_bytes / 1e6:.0f} MB in {n} files ({archive.identifier})", flush=True)
    want = b.answer(archive.identifier)
    orphan_scan(b, archive.identifier, rows, in_bytes)
    for strategy, (call, ours_ddl) in STRATEGIES.items():
        mine = b.register(f"ours_{strategy}_{spec.name}", base.metadata_location)
        theirs = b.register(f"ref_{strategy}_{spec.name}", base.metadata_location)
        if ours_ddl:
            b.sql(f"ALTER TABLE {spark_mod.CATALOG}.{mine} {ours_ddl}")
        result, wall, cpu = b.ours("compact", mine)
        assert result.status == "done", result
        ref_out, ref_wall, ref_cpu = b.reference(
            f"CALL {spark_mod.CATALOG}.system.rewrite_data_files(table => '{theirs}', {call}, options => "
            f"map('min-input-files','2','target-file-size-bytes','{TARGET}'))")
        got_ours, got_ref = b.answer(mine), b.answer(theirs)
        same = got_ours[:2] == got_ref[:2] == want[:2]
        row = {"what": f"compact {strategy}", "mb": in_bytes / 1e6, "files_in": n, "ours_wall": wall, "ours_cpu": cpu,
               "ref_wall": ref_wall, "ref_cpu": ref_cpu, "files_out": [got_ours[2], got_ref[2]], "same_answer": same,
               "ref_result": ref_out[0].asDict() if ref_out else None}
        rows.append(row)
        report(row)


def orphan_scan(b: Bench, table: str, rows: list[dict[str, Any]], in_bytes: int) -> None:
    tbl = b.catalog.load_table(table)
    root = Path(tbl.location().removeprefix("file://").removeprefix("file:"))
    old = time.time() - 20 * 86400
    for d, _, files in os.walk(root):
        for f in files:
            os.utime(os.path.join(d, f), (old, old))
    planted = []
    for i in range(50):
        p = root / ("metadata" if i % 5 == 0 else "data") / f"orphan-{i:03d}.parquet"
        p.write_bytes(os.urandom(64))
        os.utime(p, (old + 10 * 86400, old + 10 * 86400))
        planted.append(os.path.normpath(p))
    result, wall, cpu = b.ours("clean-orphans", table, dry_run=True)
    ours = {os.path.normpath(c["path"].removeprefix("file://")) for c in result.plan["candidates"]}
    cutoff = datetime.now(UTC) - timedelta(days=2)
    got, ref_wall, ref_cpu = b.reference(
        f"CALL {spark_mod.CATALOG}.system.remove_orphan_files(table => '{table}', older_than => "
        f"TIMESTAMP '{cutoff:%Y-%m-%d %H:%M:%S}', dry_run => true)")
    theirs = {os.path.normpath(r[0].removeprefix("file:")) for r in got}
    row = {"what": "orphan scan (dry run)", "mb": in_bytes / 1e6, "files_in": result.plan["listed"],
           "ours_wall": wall, "ours_cpu": cpu, "ref_wall": ref_wall, "ref_cpu": ref_cpu,
           "found": [len(ours), len(theirs)], "same_answer": ours == theirs == set(planted)}
    rows.append(row)
    report(row)
    for p in planted:
        os.remove(p)


def expiration(b: Bench, snapshots: int, rows: list[dict[str, Any]]) -> None:
    """A history of small PyIceberg appends (real summaries and timestamps), expired to the last snapshot."""
    import pyarrow as pa
    from pyiceberg.catalog import load_catalog

    plain = load_catalog(spark_mod.CATALOG, **b.props)  # without the lineage gate: these are a writer's appends
    mine = f"{NS}.history_{snapshots}"
    batch = pa.table({"payload_id": pa.array(range(10), pa.int64()), "sensor_kind": pa.array(["s"] * 10)})
    table = plain.create_table(mine, schema=batch.schema)
    for i in range(snapshots):
        table.append(batch.set_column(0, "payload_id", pa.array(range(i * 10, i * 10 + 10), pa.int64())))
    table = table.refresh()
    theirs = b.register(f"ref_history_{snapshots}", table.metadata_location)
    before = {s.snapshot_id for s in table.metadata.snapshots}
    print(f"\n== expiration, {len(before)} snapshots ({mine})", flush=True)
    result, wall, cpu = b.ours("expire", mine)
    assert result.status == "done", result
    now = datetime.now(UTC) + timedelta(seconds=1)
    _, ref_wall, ref_cpu = b.reference(
        f"CALL {spark_mod.CATALOG}.system.expire_snapshots(table => '{theirs}', older_than => "
        f"TIMESTAMP '{now:%Y-%m-%d %H:%M:%S}', retain_last => 1)")
    ours_left = {s.snapshot_id for s in b.catalog.load_table(mine).metadata.snapshots}
    ref_left = {s.snapshot_id for s in b.catalog.load_table(theirs).metadata.snapshots}
    row = {"what": "expire", "snapshots": len(before), "ours_wall": wall, "ours_cpu": cpu, "ref_wall": ref_wall,
           "ref_cpu": ref_cpu, "expired": [len(before - ours_left), len(before - ref_left)],
           "same_answer": before - ours_left == before - ref_left}
    rows.append(row)
    report(row)


def warm_up(b: Bench) -> None:
    """JIT and class loading on both sides before anything is timed (a tiny table through every call)."""
    rows: list[dict[str, Any]] = []
    compaction(b, 2, (0.1, 0.2), rows, name="warmup")
    expiration(b, 3, rows)
    print("== (warm-up above, not recorded)", flush=True)


def report(r: dict[str, Any]) -> None:
    size = f"{r['mb']:.0f} MB" if "mb" in r else f"{r['snapshots']} snapshots"
    ratio_cpu = r["ref_cpu"] / r["ours_cpu"] if r["ours_cpu"] else float("inf")
    ratio_wall = r["ref_wall"] / r["ours_wall"] if r["ours_wall"] else float("inf")
    print(f"{r['what']:22s} {size:>14s}  ours {r['ours_wall']:6.2f} s wall {r['ours_cpu']:6.2f} s CPU | "
          f"Iceberg {r['ref_wall']:6.2f} s wall {r['ref_cpu']:6.2f} s CPU | per core {ratio_cpu:4.2f}x, "
          f"wall {ratio_wall:4.2f}x | same answer: {r['same_answer']}", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--mb", type=float, nargs="+", default=[100, 355], help="compaction input sizes")
    ap.add_argument("--file-mb", type=float, nargs=2, default=[0.5, 1.5], help="small file sizes (uniform)")
    ap.add_argument("--snapshots", type=int, nargs="*", default=[100, 300], help="expiration history sizes")
    ap.add_argument("--driver-memory", default="3g")
    ap.add_argument("--json", help="write every row here")
    ap.add_argument("--profile", action="store_true",
                    help="cProfile our compactions (run with LIFECYCLE_COMPACTION_THREADS=1 so the work is on the "
                         "profiled thread); prints the top functions by own time")
    args = ap.parse_args()
    why = toolchain.missing()
    if why:
        sys.exit(f"bench/reference.py: {why}")
    work = Path(tempfile.mkdtemp(prefix="lifecycle-bench-ref-"))
    load0 = os.getloadavg()
    rows: list[dict[str, Any]] = []
    b = Bench(work, args.driver_memory)
    try:
        warm_up(b)
        if args.profile:
            b.profile = []
        for mb in args.mb:
            compaction(b, mb, tuple(args.file_mb), rows)  # type: ignore[arg-type]
        for n in args.snapshots:
            expiration(b, n, rows)
        if b.profile:
            import pstats

            for table, prof in b.profile:
                print(f"\n== profile of our compaction of {table} (own time)")
                pstats.Stats(prof).sort_stats("tottime").print_stats(12)
    finally:
        b.close()
        shutil.rmtree(work, ignore_errors=True)
    print(f"\nload average at start {load0[0]:.1f}/{load0[1]:.1f}, at end {os.getloadavg()[0]:.1f}/"
          f"{os.getloadavg()[1]:.1f} (2 cores); Iceberg Java {toolchain.iceberg_runtime_jar().name}")
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1, default=str))


if __name__ == "__main__":
    main()
