"""Merge-on-read rewrite throughput: one file group rewritten (bin-pack) by the plain reader, and by the
delete-applying reader (lifecycle.compaction.mor_read) with position deletes on every input, with an equality
delete, and with no deletes at all (the cost of reading through PyIceberg's ArrowScan).

    .venv/bin/python bench/mor.py --mb 100

MB/s = input bytes / wall seconds of the rewrite (LiveGroup.open, which reads the deletes and counts live
rows, included); CPU s = process CPU seconds of the same span. Each mode runs --repeat times, interleaved; the
median is reported. Deletes are committed as another engine commits them (tests/iceberg_writes.py).
"""

from __future__ import annotations

import argparse
import math
import statistics
import sys
import tempfile
import time
from datetime import date
from pathlib import Path
from typing import Any

import pyarrow as pa
from pyiceberg.io.pyarrow import schema_to_pyarrow

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from lifecycle.bandwidth import TokenBucket
from lifecycle.compaction.mor_read import LiveGroup
from lifecycle.compaction.planner import BINPACK, FileGroup, Strategy
from lifecycle.compaction.rewrite import OutputOptions, compaction_threads, rewrite_group, row_group_rows
from lifecycle.compaction.scan import live_files
from lifecycle_cli.synth import ArchiveSpec, build_archive
from tests.iceberg_writes import commit_equality_delete, commit_position_delete

PART = "mission_id=apollo-7,day=2024-03-15"


def _table(work: Path, name: str, mb: float) -> Any:
    from pyiceberg.catalog.sql import SqlCatalog

    (work / "warehouse").mkdir(parents=True, exist_ok=True)
    catalog = SqlCatalog("bench", uri=f"sqlite:///{work / 'catalog.db'}", warehouse=f"file://{work / 'warehouse'}")
    n = max(2, math.ceil(mb / 4))
    spec = ArchiveSpec(name=name, partitions=[("apollo-7", date(2024, 3, 15))], files_per_partition=n,
                       file_bytes=(3_000_000, 5_000_000))
    return build_archive(catalog, spec).table


def _group(table: Any) -> tuple[FileGroup, int]:
    _, parts = live_files(table.refresh())
    infos = parts[PART].infos()
    outputs = max(1, math.ceil(sum(f.size for f in infos) / 128e6))
    return FileGroup(tuple(infos), outputs), table.current_snapshot().snapshot_id


def run(table: Any, mor: bool, out: Path) -> tuple[float, float, int]:
    group, base = _group(table)
    started, cpu = time.monotonic(), time.process_time()
    limiter = TokenBucket(10**15)
    live = LiveGroup.open(table, PART, group, base, limiter) if mor else None
    group = live.group if live is not None else group
    options = OutputOptions(schema_to_pyarrow(table.schema()), row_group_rows(group.input_bytes, group.records))
    paths = [f"file://{out}/{time.monotonic_ns()}-{i}.parquet" for i in range(group.output_count)]
    rewrite_group(table.io, group.inputs, paths, Strategy(BINPACK), options, limiter, threads=compaction_threads(),
                  reader=live.read if live is not None else None)
    return time.monotonic() - started, time.process_time() - cpu, group.input_bytes


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--mb", type=float, default=100)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        plain, pos, eq = (_table(work, n, args.mb) for n in ("plain", "positions", "equality"))
        for f in (t.file for t in pos.scan().plan_files()):
            commit_position_delete(pos, f, list(range(0, f.record_count, 100)), {})          # 1 % of every file
        ids = eq.scan(selected_fields=("payload_id",)).to_arrow()["payload_id"].to_pylist()[::100]
        first = next(iter(eq.scan().plan_files())).file
        commit_equality_delete(eq, first, pa.table({"payload_id": pa.array(ids, pa.int64())}), {})
        modes = {"plain reader": (plain, False), "ArrowScan, no deletes": (plain, True),
                 "position deletes (1 %)": (pos, True), f"equality delete ({len(ids)} ids)": (eq, True)}
        results: dict[str, list[tuple[float, float, int]]] = {m: [] for m in modes}
        for _ in range(args.repeat):
            for mode, (table, mor) in modes.items():
                out = work / "out"
                out.mkdir(exist_ok=True)
                results[mode].append(run(table, mor, out))
        print(f"threads={compaction_threads()}  input ~{args.mb:.0f} MB, medians of {args.repeat}")
        print(f"{'mode':<28} {'MB/s':>8} {'wall s':>8} {'CPU s':>8}")
        for mode, got in results.items():
            wall = statistics.median(g[0] for g in got)
            cpu = statistics.median(g[1] for g in got)
            print(f"{mode:<28} {got[0][2] / 1e6 / wall:8.1f} {wall:8.2f} {cpu:8.2f}")


if __name__ == "__main__":
    main()
