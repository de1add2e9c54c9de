"""Orphan scan benchmark: listing + classification time and peak memory, on local disk and on moto S3.

Builds an unpartitioned table whose live data files are registered through real manifests (many fast
appends, so many manifests and manifest lists), plus unreachable files of mixed ages (~5 %: most older than
the minimum age, some young), then measures in a fresh child process:

  live_set   refresh + the complete live set (manifest lists, manifests, metadata log) + guards
  scan       streaming listing through the classifier (what the job holds in memory: candidates only)
  listing    a second pass of the listing alone (no classification), to split the scan time
  delete     the candidates, in batches (local unlink / S3 DeleteObjects)

and the child's peak RSS (ru_maxrss) against its RSS after imports. The journal and writer guards are
empty here (they are a few small Postgres queries in the real job).

    .venv/bin/python bench/orphans.py --local-files 100000 --s3-files 10000
    .venv/bin/python bench/orphans.py --local-files 20000 --s3-files 0      # quick
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import resource
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from pyiceberg.catalog.sql import SqlCatalog  # noqa: E402
from pyiceberg.manifest import DataFile, DataFileContent, FileFormat  # noqa: E402
from pyiceberg.schema import Schema  # noqa: E402
from pyiceberg.typedef import Record  # noqa: E402
from pyiceberg.types import LongType, NestedField  # noqa: E402

DAY = 86400.0
ORPHAN_SHARE = 0.05
YOUNG_SHARE_OF_ORPHANS = 0.2
COMMITS = 50


def _catalog(root: Path, s3: dict[str, str] | None) -> Any:
    props = {"type": "sql", "uri": f"sqlite:///{root / 'catalog.db'}"}
    props.update(s3 or {"warehouse": f"file://{root / 'warehouse'}"})
    cat = SqlCatalog("bench", **props)
    cat.create_namespace("bench")
    return cat


def build(root: Path, n_files: int, s3: dict[str, str] | None) -> dict[str, Any]:
    """Live files through real manifests; ~5 % unreachable files, mostly old. Returns what was made."""
    cat = _catalog(root, s3)
    schema = Schema(NestedField(1, "id", LongType(), required=False))
    table = cat.create_table("bench.t", schema, properties={"format-version": "2"})
    base = table.location().rstrip("/")
    n_orphans = int(n_files * ORPHAN_SHARE)
    n_live = n_files - n_orphans
    live = [f"{base}/data/bucket={i % 100:03d}/{uuid.uuid4().hex}.parquet" for i in range(n_live)]
    orphans = [f"{base}/data/bucket={i % 100:03d}/orphan-{uuid.uuid4().hex}.parquet" for i in range(n_orphans)]
    t0 = time.monotonic()
    _write_all(table, live + orphans, s3)
    written = time.monotonic() - t0
    per = max(1, len(live) // COMMITS)
    for start in range(0, len(live), per):
        with table.transaction() as tx:
            fa = tx.update_snapshot().fast_append()
            with fa:
                for p in live[start:start + per]:
                    fa.append_data_file(DataFile.from_args(
                        content=DataFileContent.DATA, file_path=p, file_format=FileFormat.PARQUET,
                        partition=Record(), record_count=1, file_size_in_bytes=16))
        table = table.refresh()
    young = set(orphans[: int(n_orphans * YOUNG_SHARE_OF_ORPHANS)])
    if s3 is None:
        now = time.time()
        for p in live + orphans:
            age = 3 if p in young else 30
            os.utime(p.removeprefix("file://"), (now - age * DAY, now - age * DAY))
    return {"location": table.location(), "live_data_files": n_live,
            "unreachable_files": n_orphans, "unreachable_young": len(young), "write_seconds": round(written, 1),
            "snapshots": len(table.metadata.snapshots)}


def _write_all(table: Any, paths: list[str], s3: dict[str, str] | None) -> None:
    if s3 is None:
        for p in paths:
            local = p.removeprefix("file://")
            os.makedirs(os.path.dirname(local), exist_ok=True)
            with open(local, "wb") as f:
                f.write(b"PAR1-bench-file!")
        return
    from lifecycle.s3 import s3_client

    client = s3_client(s3)
    bucket = s3["warehouse"].removeprefix("s3://").split("/")[0]

    def put(p: str) -> None:
        client.put_object(Bucket=bucket, Key=p.split("/", 3)[3], Body=b"PAR1-bench-file!")

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(put, paths))


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def measure(root: str, s3: dict[str, str] | None, clock_days: float, out: Any) -> None:
    """In a fresh process: live set, streaming scan, deletes; peak RSS."""
    from lifecycle.iceberg.reachability import ManifestCache, live_set
    from lifecycle.orphans.classify import Guards, classify_all
    from lifecycle.orphans.listing import list_files
    from lifecycle.safety.deletes import TableFiles, delete_files
    from lifecycle.safety.paths import LiveIndex, Schemes, location_prefix

    base_rss = _rss_mb()
    cat = _catalog_reopen(Path(root), s3)
    t0 = time.monotonic()
    table = cat.load_table("bench.t")
    schemes = Schemes()
    index = LiveIndex(live_set(table.io, table.metadata, table.metadata_location, ManifestCache()), schemes)
    guards = Guards(location=location_prefix(table.location()), live=index, schemes=schemes,
                    staged=frozenset(), purge=frozenset(), writer_prefixes=(),
                    cutoff=time.time() + clock_days * DAY - 7 * DAY)
    t1 = time.monotonic()
    result = classify_all(list_files(table.location(), table.io.properties), guards)
    t2 = t1b = time.monotonic()
    after_scan_rss = _rss_mb()
    listed_again = sum(1 for _ in list_files(table.location(), table.io.properties))  # listing alone
    t_list = time.monotonic() - t2
    t2 = time.monotonic()
    paths = [f.path for f in result.candidates]
    for start in range(0, len(paths), 1000):
        delete_files(paths[start:start + 1000], TableFiles.of(table, "bench.t", schemes), "clean-orphans")
    t3 = time.monotonic()
    out.put({"listed": result.listed, "live": result.counts["live"], "candidates": len(result.candidates),
             "too_young": result.counts["too-young"], "live_set_s": round(t1 - t0, 2),
             "scan_s": round(t1b - t1, 2), "listing_alone_s": round(t_list, 2),
             "listed_again": listed_again, "live_set_plus_scan_s": round(t1b - t0, 2),
             "delete_s": round(t3 - t2, 2), "rss_after_imports_mb": round(base_rss),
             "peak_rss_scan_mb": round(after_scan_rss), "peak_rss_mb": round(_rss_mb())})


def _catalog_reopen(root: Path, s3: dict[str, str] | None) -> Any:
    props = {"type": "sql", "uri": f"sqlite:///{root / 'catalog.db'}"}
    props.update(s3 or {"warehouse": f"file://{root / 'warehouse'}"})
    return SqlCatalog("bench", **props)


def run_case(name: str, n: int, s3: dict[str, str] | None) -> dict[str, Any]:
    root = Path(tempfile.mkdtemp(prefix=f"orphans-bench-{name}-"))
    t0 = time.monotonic()
    made = build(root, n, s3)
    made["build_seconds"] = round(time.monotonic() - t0, 1)
    # On S3 mtimes cannot be set: move the clock instead (files just written look 30 days old; none young).
    clock_days = 30.0 if s3 else 0.0
    ctx = mp.get_context("spawn")
    q = ctx.Queue()
    p = ctx.Process(target=measure, args=(str(root), s3, clock_days, q))
    p.start()
    res = q.get(timeout=3600)
    p.join()
    shutil.rmtree(root, ignore_errors=True)
    return {"case": name, "files": n, **made, **res}


def _moto() -> tuple[subprocess.Popen[bytes], str]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            break
        except OSError:
            time.sleep(0.1)
    return proc, f"http://127.0.0.1:{port}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--local-files", type=int, default=100_000)
    ap.add_argument("--s3-files", type=int, default=10_000)
    args = ap.parse_args()
    results = []
    if args.local_files:
        results.append(run_case("local", args.local_files, None))
        print(json.dumps(results[-1]), flush=True)
    if args.s3_files:
        import boto3

        proc, endpoint = _moto()
        try:
            bucket = f"bench-{uuid.uuid4().hex[:8]}"
            boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1", aws_access_key_id="testing",
                         aws_secret_access_key="testing").create_bucket(Bucket=bucket)
            s3 = {"warehouse": f"s3://{bucket}/warehouse", "s3.endpoint": endpoint, "s3.access-key-id": "testing",
                  "s3.secret-access-key": "testing", "s3.region": "us-east-1",
                  "s3.force-virtual-addressing": "false"}
            results.append(run_case("moto-s3", args.s3_files, s3))
            print(json.dumps(results[-1]), flush=True)
        finally:
            proc.terminate()
            proc.wait(timeout=10)


if __name__ == "__main__":
    main()
