"""Soak: does the fleet slow analyst queries down?

A writer commits every --writer-interval seconds (lineage + a writer heartbeat), analysts issue
--queries-per-minute scans of random partitions (PyIceberg + pyarrow, predicates, measured end to end),
first for --phase-minutes without the fleet (baseline), then for the same length with the fleet running
every job on a compressed schedule in separate, lower-priority processes, then again without the fleet
("after": the table as the fleet left it). The brief's measure is fleet vs baseline (the analysts' view,
the fleet's benefit included); fleet vs after isolates the interference (same table state, benefit
removed); the steady state is the fleet phase after its first catch-up compaction (the one-off rewrite of
the backlog) vs after: what analysts feel day to day once the fleet has caught up. Prints p50/p95/p99 of
the phases and the changes, and writes a markdown report with PNG plots to --out.

    python bench/soak.py --phase-minutes 5 --out bench/out/soak
    python bench/soak.py --phase-minutes 5 --no-nice          # the fleet at normal priority
    python bench/soak.py --phase-minutes 5 --share 0.8        # a larger bandwidth share

Only loopback services are used: PostgreSQL at LIFECYCLE_DATABASE_URL (default 127.0.0.1:5432).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
from pyiceberg.expressions import And, EqualTo, GreaterThanOrEqual, LessThan

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from lifecycle.iceberg.catalog import open_catalog  # noqa: E402
from lifecycle.iceberg.datafiles import data_file_from_parquet  # noqa: E402
from lifecycle.settings import Settings, from_mapping  # noqa: E402
from lifecycle.state.store import StateStore  # noqa: E402
from lifecycle.state.writers import WriterHeartbeat  # noqa: E402
from lifecycle_cli.synth import ArchiveSpec, OrphanSpec, build_archive, make_rows, partition_path, write_file  # noqa: E402

PHASES = ("baseline", "fleet", "after")
JOBS_CADENCE = {  # seconds between runs on the compressed schedule
    "compact": 20, "expire": 120, "purge": 120, "clean-orphans": 180,
    "rewrite-manifests": 180, "compact-schema-history": 300,
}


@dataclass
class Sample:
    at: float
    seconds: float
    phase: str
    ok: bool


@dataclass
class Load:
    samples: list[Sample] = field(default_factory=list)
    commits: list[float] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    k = (len(ordered) - 1) * q
    lo, hi = int(k), min(int(k) + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (k - lo)


def make_settings(data_dir: Path, db_url: str, share: float, bytes_per_second: int) -> tuple[Settings, Path]:
    toml = data_dir / "lifecycle.toml"
    toml.write_text(
        f'[state]\ndatabase_url = "{db_url}"\ndata_dir = "{data_dir}"\n'
        f"[bandwidth]\nobject_store_bytes_per_second = {bytes_per_second}\nlifecycle_share = {share}\n"
        '[tables."archive.sda_observations"]\n'
        "small_file_bytes = 400000\nmin_small_files = 20\ntarget_file_bytes = 4000000\n"
        "retention_days = 30\norphan_min_age_days = 1\nmetadata_log_max = 50\nmanifest_target_bytes = 65536\n"
    )
    raw = {"state": {"database_url": db_url, "data_dir": str(data_dir)},
           "bandwidth": {"object_store_bytes_per_second": bytes_per_second, "lifecycle_share": share}}
    return from_mapping(raw, env={}), toml


def build(settings: Settings, partitions: int, files: int) -> list[tuple[str, date]]:
    days = [date(2024, 3, 1) + timedelta(days=i) for i in range(partitions // 2 + 1)]
    parts = [(m, d) for d in days for m in ("apollo-7", "apollo-8")][:partitions]
    spec = ArchiveSpec(partitions=parts, files_per_partition=files, file_bytes=(40_000, 300_000),
                       history_snapshots=300, history_span_days=60, tags={"audit": 20},
                       orphans=[OrphanSpec(50, 10.0)])
    build_archive(open_catalog(settings), spec)
    return parts


def writer_loop(settings: Settings, parts: list[tuple[str, date]], interval: float, load: Load,
                stop: threading.Event) -> None:
    catalog = open_catalog(settings)
    try:
        from lifecycle.lineage import guard_catalog  # the lineage gate, when present
        catalog = guard_catalog(catalog)
    except ImportError:
        pass
    rng = random.Random(1)
    with WriterHeartbeat(settings.state.database_url, writer_id=f"soak-writer-{os.getpid()}",
                         interval_seconds=min(interval, 10)) as hb:
        while not stop.wait(interval):
            table = catalog.load_table("archive.sda_observations")
            mission, day = rng.choice(parts)
            path = f"{partition_path(table, mission, day)}/soak-{uuid.uuid4().hex}.parquet"
            hb.set_paths([path])
            write_file(table, path, make_rows(rng, mission, day, 200))
            props = {"writer.id": hb.writer_id, "writer.commit_hash": "soak", "writer.invocation_id": uuid.uuid4().hex}
            try:
                with table.transaction() as tx, tx.update_snapshot(snapshot_properties=props).fast_append() as fa:
                    fa.append_data_file(data_file_from_parquet(table.io, tx.table_metadata, path))
                with load.lock:
                    load.commits.append(time.time())
            except Exception as exc:
                print(f"writer: commit failed: {exc}", file=sys.stderr)
            hb.set_paths([])


def one_query(catalog: Any, parts: list[tuple[str, date]], rng: random.Random) -> None:
    mission, day = rng.choice(parts)
    start = datetime(day.year, day.month, day.day, tzinfo=UTC) + timedelta(hours=rng.randrange(0, 20))
    expr = And(And(EqualTo("mission_id", mission), GreaterThanOrEqual("ts", start.isoformat())),
               And(LessThan("ts", (start + timedelta(hours=4)).isoformat()),
                   EqualTo("sensor_kind", f"sensor-{rng.randrange(64):02d}")))
    table = catalog.load_table("archive.sda_observations")
    table.scan(row_filter=expr, selected_fields=("ts", "payload_id", "sensor_kind")).to_arrow()


def query_load(settings: Settings, parts: list[tuple[str, date]], per_minute: float, seconds: float,
               phase: str, load: Load) -> None:
    catalog = open_catalog(settings)
    rng = random.Random(hash(phase) & 0xFFFF)
    deadline = time.monotonic() + seconds

    def run(seed: int) -> None:
        local = random.Random(seed)
        t0 = time.perf_counter()
        ok = True
        try:
            one_query(catalog, parts, local)
        except Exception as exc:
            ok = False
            print(f"query failed: {exc}", file=sys.stderr)
        with load.lock:
            load.samples.append(Sample(time.time(), time.perf_counter() - t0, phase, ok))

    with ThreadPoolExecutor(max_workers=8) as pool:
        next_at = time.monotonic()
        while next_at < deadline:
            pause = next_at - time.monotonic()
            if pause > 0:
                time.sleep(pause)  # pacing an open-loop load generator, not synchronisation
            pool.submit(run, rng.randrange(1 << 30))
            next_at += rng.expovariate(per_minute / 60.0)


def fleet_main(config: str, log_path: str, seconds: float, nice: bool) -> None:
    """The fleet phase's worker process: every job on the compressed schedule, lower priority."""
    if nice:
        from lifecycle.fleet.priority import lower_priority
        lower_priority(10)
    from lifecycle.jobs.base import JobRequest
    from lifecycle.jobs.runtime import build_context, execute
    from lifecycle.settings import load as load_settings

    settings = load_settings(config, env={})
    ctx = build_context(settings, manual=True)
    limiter = ctx.limiter
    deadline = time.monotonic() + seconds
    last = {job: -1e9 for job in JOBS_CADENCE}
    with open(log_path, "a") as log:
        while time.monotonic() < deadline:
            for job, every in JOBS_CADENCE.items():
                if time.monotonic() - last[job] < every or time.monotonic() >= deadline:
                    continue
                last[job] = time.monotonic()
                before = getattr(limiter, "charged_bytes", 0)
                t0 = time.time()
                status, counts = "failed", {}
                try:
                    result = execute(ctx, JobRequest(job, "archive.sda_observations", manual=True))
                    status, counts = result.status, result.counts
                except ImportError:
                    status = "missing"
                except Exception as exc:
                    status = f"failed: {exc}"[:200]
                log.write(json.dumps({"job": job, "start": t0, "end": time.time(), "status": status,
                                      "counts": counts,
                                      "bytes": getattr(limiter, "charged_bytes", 0) - before}) + "\n")
                log.flush()
            time.sleep(1)  # the scheduler's tick


def catch_up_end(jobs: list[dict[str, Any]]) -> float | None:
    """When the fleet's first compaction that rewrote anything (the catch-up of the backlog) finished."""
    done = [j["end"] for j in jobs if j["job"] == "compact" and (j.get("counts") or {}).get("groups_committed")]
    return min(done) if done else None


def latency_stats(samples: list[Sample]) -> dict[str, Any]:
    lat = [s.seconds for s in samples if s.ok]
    return {"queries": len(lat), "p50": percentile(lat, 0.5), "p95": percentile(lat, 0.95),
            "p99": percentile(lat, 0.99), "failed": sum(1 for s in samples if not s.ok)}


def report(
    load: Load, jobs: list[dict[str, Any]], args: argparse.Namespace, out: Path, t_start: float
) -> dict[str, Any]:
    stats: dict[str, Any] = {}
    for phase in PHASES:
        stats[phase] = latency_stats([s for s in load.samples if s.phase == phase])
    # steady state: the fleet phase once its first catch-up compaction has committed, against the same table
    # without the fleet ("after"): what an analyst feels day to day, the one-off catch-up left out
    caught_up = catch_up_end(jobs)
    stats["catch_up_seconds"] = (caught_up - min(j["start"] for j in jobs)) if caught_up and jobs else None
    stats["steady"] = latency_stats([s for s in load.samples if s.phase == "fleet" and caught_up is not None
                                     and s.at - s.seconds >= caught_up])
    for q in ("p50", "p95", "p99"):
        stats[f"{q}_change_pct"] = 100 * (stats["fleet"][q] / stats["baseline"][q] - 1)      # the brief's measure
        stats[f"{q}_interference_pct"] = 100 * (stats["fleet"][q] / stats["after"][q] - 1)  # benefit removed
        stats[f"{q}_steady_pct"] = 100 * (stats["steady"][q] / stats["after"][q] - 1)      # after the catch-up
    stats["pass"] = stats["p95_change_pct"] < 10 and stats["p99_change_pct"] < 10
    stats["steady_pass"] = stats["p95_steady_pct"] < 10
    stats["commits"] = len(load.commits)
    stats["jobs"] = {}
    for j in jobs:
        s = stats["jobs"].setdefault(j["job"], {"runs": 0, "bytes": 0, "statuses": {}})
        s["runs"] += 1
        s["bytes"] += j["bytes"]
        s["statuses"][j["status"]] = s["statuses"].get(j["status"], 0) + 1
    budget = args.bytes_per_second * args.share
    moved = sum(j["bytes"] for j in jobs)
    stats["bandwidth"] = {"budget_bytes_per_second": budget, "moved_bytes": moved,
                          "average_bytes_per_second": moved / max(1.0, args.phase_minutes * 60)}
    out.mkdir(parents=True, exist_ok=True)
    pngs = plot(load, jobs, budget, out, t_start)
    lines = [f"# Soak report ({datetime.now(UTC):%Y-%m-%d %H:%M} UTC)", "",
             f"Command: `python bench/soak.py {' '.join(sys.argv[1:])}`", "",
             "| phase | queries | p50 s | p95 s | p99 s | failed |", "|---|---|---|---|---|---|"]
    for phase in (*PHASES[:2], "steady", PHASES[2]):
        p = stats[phase]
        label = "fleet, steady state (after the catch-up)" if phase == "steady" else phase
        lines.append(f"| {label} | {p['queries']} | {p['p50']:.3f} | {p['p95']:.3f} | {p['p99']:.3f} | {p['failed']} |")
    catch_up = stats["catch_up_seconds"]
    lines += ["", f"Change (fleet vs baseline, the brief's measure): p50 {stats['p50_change_pct']:+.1f} %, "
              f"p95 {stats['p95_change_pct']:+.1f} %, p99 {stats['p99_change_pct']:+.1f} % → "
              f"{'PASS' if stats['pass'] else 'FAIL'} (< 10 %)",
              (f"Steady state (the fleet phase after its first catch-up compaction, which ended {catch_up:.0f} s"
               " into it, vs the same table without the fleet): " if catch_up is not None else
               "Steady state: no catch-up compaction in the fleet phase: ")
              + f"p50 {stats['p50_steady_pct']:+.1f} %, p95 {stats['p95_steady_pct']:+.1f} %, "
              f"p99 {stats['p99_steady_pct']:+.1f} % → {'PASS' if stats['steady_pass'] else 'FAIL'} (p95 < 10 %)",
              f"Interference (fleet vs after: same table state, the fleet's benefit removed): "
              f"p50 {stats['p50_interference_pct']:+.1f} %, p95 {stats['p95_interference_pct']:+.1f} %, "
              f"p99 {stats['p99_interference_pct']:+.1f} %", "",
              f"Writer commits: {stats['commits']}. Fleet priority lowered: {not args.no_nice}. "
              f"Bandwidth budget {budget:,.0f} B/s; moved {moved:,} bytes.", "", "| job | runs | bytes | statuses |",
              "|---|---|---|---|"]
    for job, s in stats["jobs"].items():
        lines.append(f"| {job} | {s['runs']} | {s['bytes']:,} | {s['statuses']} |")
    lines += [""] + [f"![{p.stem}]({p.name})" for p in pngs]
    (out / "report.md").write_text("\n".join(lines) + "\n")
    (out / "stats.json").write_text(json.dumps(stats, indent=2, default=str))
    return stats


def plot(load: Load, jobs: list[dict[str, Any]], budget: float, out: Path, t0: float) -> list[Path]:
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib not installed (pip install '.[bench]'): no plots", file=sys.stderr)
        return []
    fig, ax = plt.subplots(figsize=(11, 4))
    for phase, color in zip(PHASES, ("tab:blue", "tab:orange", "tab:green"), strict=True):
        pts = [(s.at - t0, s.seconds * 1000) for s in load.samples if s.phase == phase and s.ok]
        if pts:
            ax.scatter(*zip(*pts, strict=True), s=6, color=color, label=f"query latency ({phase})")
    colors = dict(zip(JOBS_CADENCE, ("tab:red", "tab:green", "tab:purple", "tab:brown", "tab:pink", "tab:gray"),
                      strict=True))
    for j in jobs:
        ax.axvspan(j["start"] - t0, max(j["end"] - t0, j["start"] - t0 + 0.5), alpha=0.15, color=colors[j["job"]])
    ax.set_xlabel("seconds since start")
    ax.set_ylabel("latency (ms)")
    ax.set_title("Analyst query latency; shaded: fleet jobs running")
    ax.legend(loc="upper left")
    lat = out / "latency.png"
    fig.tight_layout()
    fig.savefig(lat, dpi=110)
    plt.close(fig)
    fig, ax = plt.subplots(figsize=(11, 3))
    for j in jobs:
        span = max(j["end"] - j["start"], 0.5)
        ax.bar(j["start"] - t0, j["bytes"] / span, width=span, align="edge", color=colors[j["job"]], alpha=0.7)
    ax.axhline(budget, color="black", linestyle="--", label="budget (bytes/s)")
    ax.set_xlabel("seconds since start")
    ax.set_ylabel("bytes/s moved by the fleet")
    ax.legend(loc="upper left")
    bw = out / "bandwidth.png"
    fig.tight_layout()
    fig.savefig(bw, dpi=110)
    plt.close(fig)
    return [lat, bw]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--phase-minutes", type=float, default=5.0)
    ap.add_argument("--writer-interval", type=float, default=30.0)
    ap.add_argument("--queries-per-minute", type=float, default=50.0)
    ap.add_argument("--partitions", type=int, default=8)
    ap.add_argument("--files-per-partition", type=int, default=40)
    ap.add_argument("--share", type=float, default=0.30)
    ap.add_argument("--bytes-per-second", type=int, default=20_000_000,
                    help="the object store's budget this host may use (scaled to a laptop)")
    ap.add_argument("--no-nice", action="store_true", help="run the fleet at normal priority")
    ap.add_argument("--out", default="bench/out/soak")
    ap.add_argument("--db", default=os.environ.get("LIFECYCLE_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres"))
    ap.add_argument("--fleet-process", nargs=3, metavar=("CONFIG", "LOG", "SECONDS"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.fleet_process:
        fleet_main(args.fleet_process[0], args.fleet_process[1], float(args.fleet_process[2]), not args.no_nice)
        return
    work = Path(tempfile.mkdtemp(prefix="lifecycle-soak-"))
    dbname = f"soak_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(args.db, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{dbname}"')
    db_url = f"{args.db.rsplit('/', 1)[0]}/{dbname}"
    settings, toml = make_settings(work, db_url, args.share, args.bytes_per_second)
    StateStore(db_url, __import__("lifecycle.clock", fromlist=["SystemClock"]).SystemClock()).close()
    print(f"building the archive under {work} ...", flush=True)
    parts = build(settings, args.partitions, args.files_per_partition)
    load, stop = Load(), threading.Event()
    writer = threading.Thread(target=writer_loop, args=(settings, parts, args.writer_interval, load, stop), daemon=True)
    writer.start()
    seconds = args.phase_minutes * 60
    t_start = time.time()
    print(f"baseline phase: {seconds:.0f} s", flush=True)
    query_load(settings, parts, args.queries_per_minute, seconds, "baseline", load)
    log_path = work / "fleet.jsonl"
    cmd = [sys.executable, __file__, "--fleet-process", str(toml), str(log_path), str(seconds)]
    if args.no_nice:
        cmd.append("--no-nice")
    print(f"fleet phase: {seconds:.0f} s", flush=True)
    fleet = subprocess.Popen(cmd, cwd=REPO)
    query_load(settings, parts, args.queries_per_minute, seconds, "fleet", load)
    fleet.wait(timeout=seconds + 600)
    print(f"after phase: {seconds:.0f} s", flush=True)
    query_load(settings, parts, args.queries_per_minute, seconds, "after", load)
    stop.set()
    writer.join(timeout=60)
    jobs = [json.loads(line) for line in log_path.read_text().splitlines()] if log_path.exists() else []
    stats = report(load, jobs, args, Path(args.out), t_start)
    print(json.dumps({k: stats[k] for k in (*PHASES, "steady", "catch_up_seconds", "p95_change_pct", "p99_change_pct",
                                             "p95_interference_pct", "p99_interference_pct", "p95_steady_pct",
                                             "p99_steady_pct", "pass", "steady_pass")},
                     indent=2, default=str))
    with psycopg.connect(args.db, autocommit=True) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{dbname}" WITH (FORCE)')


if __name__ == "__main__":
    main()
