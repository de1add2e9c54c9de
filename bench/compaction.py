"""Compaction throughput and peak RSS: bin-pack, sort and Z-order against a plain pyarrow streaming copy
and, when `deltalake` is importable (the `bench` extra), delta-rs optimize.compact / optimize.z_order.

    .venv/bin/python bench/compaction.py --mb 200
    .venv/bin/python bench/compaction.py --data narrow --mb 2000 --modes binpack,sort,zorder --repeat 1

Generates one partition of small zstd files (sizes uniform in --file-mb), then runs every mode in its own
child process so peak RSS is per mode, --repeat times with the modes interleaved, and reports each mode's
median. MB/s = input bytes / wall seconds of the rewrite. Ours writes up to $LIFECYCLE_COMPACTION_THREADS
output files at once (default: the CPUs available, at most 4); delta-rs uses every CPU; the pyarrow copy is
one sequential stream.

--data payload (the default) is the synthetic archive: 512-byte random readings per row, incompressible.
--data narrow is what real archives hold: many small columns (ids, timestamps, doubles, short strings) that
compress well, so decoded rows are several times the input bytes. Sort and Z-order run under
--budget-mb (the [compaction] memory_budget_bytes they get in production, 1024 by default: groups above
half of it spill to scratch); the modes sort-inmem and zorder-inmem order the whole group in memory whatever
its size (no budget): the path a group within half the budget takes.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import date
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq

MODES = ("binpack", "sort", "zorder", "pyarrow-copy", "delta-compact", "delta-zorder")
EXTRA_MODES = ("sort-inmem", "zorder-inmem")
ZCOLS = ("payload_id", "sensor_kind")
KINDS = ("accel", "gyro", "mag", "temp", "press", "humid", "volt", "curr", "rad", "spectro", "lidar", "cam")


def _catalog(work: Path) -> Any:
    from pyiceberg.catalog.sql import SqlCatalog

    (work / "warehouse").mkdir(parents=True, exist_ok=True)
    return SqlCatalog("bench", uri=f"sqlite:///{work / 'catalog.db'}", warehouse=f"file://{work / 'warehouse'}")


def _narrow_rows(rng: Any, n: int, start: int) -> Any:
    import numpy as np
    import pyarrow as pa

    day = np.datetime64("2024-03-15T00:00:00", "us").astype(np.int64)
    return pa.table({
        "mission_id": pa.array(["apollo-7"] * n, pa.string()),
        "ts": pa.array(np.sort(rng.integers(day, day + 86_400_000_000, n)), pa.timestamp("us", tz="UTC")),
        "payload_id": pa.array(rng.integers(0, 1_000_000, n), pa.int64()),
        "sensor_kind": pa.array(np.array(KINDS)[rng.integers(0, len(KINDS), n)], pa.string()),
        "seq": pa.array(np.arange(start, start + n), pa.int64()),
        "lat": pa.array(np.round(rng.uniform(-90, 90, n), 4)),
        "lon": pa.array(np.round(rng.uniform(-180, 180, n), 4)),
        "alt_m": pa.array(np.round(rng.normal(400_000, 5_000, n), 1)),
        "value": pa.array(rng.normal(0, 1, n)),
        "quality": pa.array(rng.integers(0, 100, n).astype(np.int32)),
        "unit": pa.array(np.array(["m/s2", "rad/s", "uT", "K", "Pa"])[rng.integers(0, 5, n)], pa.string()),
        "status": pa.array(np.array(["ok", "ok", "ok", "warn", "err"])[rng.integers(0, 5, n)], pa.string()),
    })


def generate_narrow(work: Path, mb: float, lo_mb: float, hi_mb: float, delta: bool) -> dict[str, Any]:
    """Narrow rows straight to parquet files (the table only gives the schema and FileIO to the rewrite)."""
    import numpy as np
    from pyiceberg.io.pyarrow import pyarrow_to_schema
    from pyiceberg.table.name_mapping import MappedField, NameMapping

    rng = np.random.default_rng(7)
    sample = _narrow_rows(rng, 1, 0)
    fields = [MappedField(field_id=i + 1, names=[n]) for i, n in enumerate(sample.schema.names)]
    schema = pyarrow_to_schema(sample.schema, name_mapping=NameMapping(fields))
    catalog = _catalog(work)
    catalog.create_namespace_if_not_exists("bench")
    catalog.create_table("bench.narrow", schema)
    folder = work / "warehouse" / "narrow-data"
    folder.mkdir(parents=True, exist_ok=True)
    probe = folder / "probe.parquet"
    pq.write_table(_narrow_rows(rng, 100_000, 0), probe, compression="zstd")
    per_row = probe.stat().st_size / 100_000
    probe.unlink()
    paths, sizes, records, total, start, i = [], [], [], 0, 0, 0
    while total < mb * 1e6:
        n = max(1000, int(rng.uniform(lo_mb, hi_mb) * 1e6 / per_row))
        path = folder / f"f-{i:05d}.parquet"
        pq.write_table(_narrow_rows(rng, n, start), path, compression="zstd")
        size = path.stat().st_size
        paths.append(f"file://{path}")
        sizes.append(size)
        records.append(n)
        total, start, i = total + size, start + n, i + 1
    manifest = {"work": str(work), "table": "bench.narrow", "inputs": paths, "sizes": sizes, "records": records,
                "bytes": total, "rows": start}
    if delta:
        from deltalake import write_deltalake

        for path in paths:
            write_deltalake(str(work / "delta"), pq.read_table(path.removeprefix("file://")), mode="append")
    return manifest


def generate(work: Path, mb: float, lo_mb: float, hi_mb: float, delta: bool) -> dict[str, Any]:
    from lifecycle_cli.synth import ArchiveSpec, build_archive

    n = max(2, math.ceil(mb / ((lo_mb + hi_mb) / 2)))
    spec = ArchiveSpec(partitions=[("apollo-7", date(2024, 3, 15))], files_per_partition=n,
                       file_bytes=(int(lo_mb * 1e6), int(hi_mb * 1e6)))
    archive = build_archive(_catalog(work), spec)
    inputs = [t.file for t in archive.table.scan().plan_files()]
    manifest = {"work": str(work), "table": archive.identifier, "inputs": [f.file_path for f in inputs],
                "sizes": [f.file_size_in_bytes for f in inputs], "records": [f.record_count for f in inputs],
                "bytes": sum(f.file_size_in_bytes for f in inputs), "rows": sum(f.record_count for f in inputs)}
    if delta:
        from deltalake import write_deltalake

        for path in manifest["inputs"]:
            write_deltalake(str(work / "delta"), pq.read_table(path.removeprefix("file://")), mode="append")
    return manifest


def _pyarrow_copy(m: dict[str, Any], target: int, out: Path) -> int:
    out.mkdir(parents=True, exist_ok=True)
    writer, sink, files = None, None, 0
    for path in m["inputs"]:
        pf = pq.ParquetFile(path.removeprefix("file://"))
        for batch in pf.iter_batches(batch_size=64 * 1024):
            if writer is None:
                sink = open(out / f"copy-{files}.parquet", "wb")  # noqa: SIM115
                writer = pq.ParquetWriter(sink, pf.schema_arrow, compression="zstd")
                files += 1
            writer.write_batch(batch)
            if sink is not None and sink.tell() >= target:
                writer.close()
                sink.close()
                writer = None
    if writer is not None and sink is not None:
        writer.close()
        sink.close()
    return files


def _peak_rss_mib() -> float:
    """VmHWM of this process (reset at exec, unlike ru_maxrss which a child inherits from its parent)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _verify(m: dict[str, Any], mode: str, outputs: list[str]) -> dict[str, Any]:
    from ordered_check import mean_spans, rows_fingerprint, sort_violations

    started = time.monotonic()
    narrow = m["table"] == "bench.narrow"
    want = rows_fingerprint(m["inputs"], m["rows"] if narrow else None)
    got = rows_fingerprint(outputs, m["rows"] if narrow else None)
    out: dict[str, Any] = {"rows_exact": want == got and got.get("seq_each_once", True), "rows": got["rows"]}
    if mode == "sort":
        out["sort_violations"] = sort_violations(outputs)
    if mode == "zorder":
        out["spans"] = {k: round(v, 3) for k, v in mean_spans(outputs, list(ZCOLS)).items()}
    out["verify_seconds"] = round(time.monotonic() - started, 1)
    return out


def child(mode: str, manifest_path: str, target: int, budget: int, verify: bool = False) -> None:
    m = json.loads(Path(manifest_path).read_text())
    work = Path(m["work"])
    scratch = work / f"run-{mode}-{uuid.uuid4().hex[:8]}"   # this run's outputs, removed when timed
    spilled: list[int] = []
    checks: dict[str, Any] = {}
    run: Any
    if mode in ("binpack", "sort", "zorder", *EXTRA_MODES):
        from pyiceberg.io.pyarrow import schema_to_pyarrow

        from lifecycle.bandwidth import Unlimited
        from lifecycle.compaction.planner import SORT, FileInfo, Strategy
        from lifecycle.compaction.rewrite import (
            Memory,
            OutputOptions,
            compaction_threads,
            rewrite_group,
            row_group_rows,
        )

        table = _catalog(work).load_table(m["table"])
        outputs = max(1, math.ceil(m["bytes"] / target))
        base = mode.removesuffix("-inmem")
        strategy = {"binpack": Strategy("binpack"), "zorder": Strategy("zorder", ZCOLS),
                    "sort": Strategy(SORT, ZCOLS[::-1], ("asc", "asc"), ("last", "last"))}[base]
        spill = work / f"scratch-{uuid.uuid4().hex[:8]}"
        spill.mkdir()
        memory = None if mode.endswith("-inmem") else Memory(budget, spill)
        inputs = [FileInfo(p, s, r) for p, s, r in zip(m["inputs"], m["sizes"], m["records"], strict=True)]
        options = OutputOptions(schema_to_pyarrow(table.schema()), row_group_rows(m["bytes"], m["rows"]))
        paths = [f"file://{scratch}/part-{i:04d}.parquet" for i in range(outputs)]

        def run() -> int:
            rewrite_group(table.io, inputs, paths, strategy, options, Unlimited(), threads=compaction_threads(),
                          memory=memory)
            if verify:   # outside the timing would be fairer, but the outputs go with the run: timed after
                checks.update(_verify(m, base, paths))
            spilled.append(sum(f.stat().st_size for f in spill.glob("*")))   # runs stay until the caller's cleanup
            shutil.rmtree(spill, ignore_errors=True)
            return outputs
    elif mode == "pyarrow-copy":
        def run() -> int:
            return _pyarrow_copy(m, target, scratch)
    else:
        from deltalake import DeltaTable

        shutil.copytree(work / "delta", scratch)   # optimize rewrites in place: a pristine copy per run
        os.sync()
        dt = DeltaTable(str(scratch))

        def run() -> int:
            if mode == "delta-compact":
                metrics = dt.optimize.compact(target_size=target)
            else:
                metrics = dt.optimize.z_order(list(ZCOLS), target_size=target)
            return int(metrics.get("numFilesAdded", 0))
    started = time.monotonic()
    outputs = run()
    seconds = time.monotonic() - started - checks.get("verify_seconds", 0.0)
    shutil.rmtree(scratch, ignore_errors=True)
    print(json.dumps({"mode": mode, "seconds": seconds, "mb_per_s": m["bytes"] / 1e6 / seconds,
                      "peak_rss_mib": _peak_rss_mib(), "outputs": outputs,
                      "scratch_mb": (spilled[0] / 1e6) if spilled else 0.0, **checks}))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--mb", type=float, default=200, help="partition size in MB of small files")
    ap.add_argument("--file-mb", type=float, nargs=2, default=(1, 10), metavar=("LO", "HI"))
    ap.add_argument("--target-mb", type=float, default=128)
    ap.add_argument("--data", choices=("payload", "narrow"), default="payload")
    ap.add_argument("--budget-mb", type=int, default=1024, help="memory budget of sort and Z-order (MiB)")
    ap.add_argument("--verify", action="store_true",
                    help="check rows exact (checksum, every id once), sort order and Z-order spans of the outputs")
    ap.add_argument("--modes", default=",".join(MODES))
    ap.add_argument("--repeat", type=int, default=3, help="runs of every mode; the median is reported")
    ap.add_argument("--workdir", default=None, help="keep the generated data here (default: a temp folder)")
    ap.add_argument("--child", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--manifest", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    target = int(args.target_mb * 1e6)
    if args.child:
        child(args.child, args.manifest, target, args.budget_mb << 20, args.verify)
        return
    try:
        import deltalake  # noqa: F401
        have_delta = True
    except ImportError:
        have_delta = False
    modes = [m for m in args.modes.split(",") if have_delta or not m.startswith("delta")]
    work = Path(args.workdir or tempfile.mkdtemp(prefix="lc-bench-"))
    t0 = time.monotonic()
    if (work / "manifest.json").exists():   # --workdir kept from an earlier run: same data
        manifest = json.loads((work / "manifest.json").read_text())
    else:
        gen = generate_narrow if args.data == "narrow" else generate
        manifest = gen(work, args.mb, *args.file_mb, delta=any(m.startswith("delta") for m in modes))
        (work / "manifest.json").write_text(json.dumps(manifest))
    print(f"generated {len(manifest['inputs'])} files, {manifest['bytes'] / 1e6:.1f} MB, {manifest['rows']} rows"
          f" in {time.monotonic() - t0:.0f}s; target {args.target_mb:g} MB")
    print(f"{'round':<6} {'mode':<14} {'seconds':>8} {'MB/s':>8} {'peak RSS MiB':>13} {'outputs':>8}"
          f" {'scratch MB':>10}")
    runs: dict[str, list[dict[str, Any]]] = {}
    for round_ in range(1, args.repeat + 1):   # modes interleaved, so a noisy moment hits all of them alike
        for mode in modes:
            os.sync()   # the previous run's written pages reach the disk before this run's clock starts
            done = subprocess.run([sys.executable, __file__, "--child", mode, "--manifest",
                                   str(work / "manifest.json"), "--target-mb", str(args.target_mb),
                                   "--budget-mb", str(args.budget_mb), *(["--verify"] if args.verify else [])],
                                  capture_output=True, text=True, check=False)
            if done.returncode != 0:
                print(f"{round_:<6} {mode:<14} failed: {done.stderr.strip().splitlines()[-1:]}")
                continue
            r = json.loads(done.stdout.strip().splitlines()[-1])
            runs.setdefault(mode, []).append(r)
            print(f"{round_:<6} {mode:<14} {r['seconds']:8.1f} {r['mb_per_s']:8.1f} {r['peak_rss_mib']:13.0f}"
                  f" {r['outputs']:8d} {r['scratch_mb']:10.0f}", flush=True)
            checks = {k: r[k] for k in ("rows_exact", "rows", "sort_violations", "spans") if k in r}
            if checks:
                print(f"       verified: {json.dumps(checks)}", flush=True)
    results = {mode: {"mb_per_s": statistics.median(r["mb_per_s"] for r in rs),
                      "peak_rss_mib": max(r["peak_rss_mib"] for r in rs)} for mode, rs in runs.items()}
    print(f"median of {args.repeat} run(s):")
    for mode, r in results.items():
        print(f"  {mode:<14} {r['mb_per_s']:8.1f} MB/s   peak RSS {r['peak_rss_mib']:.0f} MiB")
    copy, dc, dz = (results.get(k, {}).get("mb_per_s") for k in ("pyarrow-copy", "delta-compact", "delta-zorder"))
    if "binpack" in results and copy:
        print(f"bin-pack / pyarrow copy: {results['binpack']['mb_per_s'] / copy:.2f}x")
    if "binpack" in results and dc:
        print(f"bin-pack / delta-rs compact: {results['binpack']['mb_per_s'] / dc:.2f}x")
    if "zorder" in results and dz:
        print(f"Z-order / delta-rs z_order: {results['zorder']['mb_per_s'] / dz:.2f}x")
    for mode in ("sort", "zorder"):
        if mode in results and f"{mode}-inmem" in results:
            print(f"{mode} (budget {args.budget_mb} MiB) / in memory: "
                  f"{results[mode]['mb_per_s'] / results[mode + '-inmem']['mb_per_s']:.2f}x")
    if not args.workdir:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    main()
