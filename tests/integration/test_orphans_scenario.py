"""Shared scenario (no tests here) for the orphan-cleanup integration tests, on local disk or moto S3.

About 100 files under the table location: live ones (data, history, manifests, metadata; back-dated
on local disk), and unreachable ones of mixed ages, some under an active writer's in-progress paths, some
under a stale writer's, some journaled as compaction-staged or purge-queued (and some journaled in
states that no longer guard them). Ages on S3 are controlled by moving the injected clock: old files are
written first, young files after a real-time boundary, and the clock is set 7 days + 1 s after it.
"""

from __future__ import annotations

import hashlib
import os
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

import psycopg

from lifecycle.clock import ManualClock
from lifecycle.state.models import COPIED, DELETED, PENDING, REMOVED, WRITTEN, NewEntry
from lifecycle.state.store import StateStore
from lifecycle_cli.synth import ArchiveSpec, build_archive
from tests.conftest import wait_for

IDENT = "archive.sda_observations"


@dataclass
class Scenario:
    table: Any
    live: set[str]
    expected_deleted: set[str]
    kept: dict[str, set[str]] = field(default_factory=dict)   # guard -> paths
    rows: int = 0
    checksum: str = ""

    @property
    def unreachable(self) -> set[str]:
        return self.expected_deleted | {p for ps in self.kept.values() for p in ps}


def s3_client(table: Any) -> Any:
    import boto3

    props = table.io.properties
    return boto3.client("s3", endpoint_url=props["s3.endpoint"], region_name="us-east-1",
                        aws_access_key_id="testing", aws_secret_access_key="testing")


def all_files(table: Any) -> dict[str, float]:
    """Every file under the location with its mtime, read independently of the code under test."""
    loc = table.location().rstrip("/")
    if loc.startswith("s3://"):
        bucket, _, prefix = loc.removeprefix("s3://").partition("/")
        out: dict[str, float] = {}
        for page in s3_client(table).get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix + "/"):
            for o in page.get("Contents", ()):
                out[f"s3://{bucket}/{o['Key']}"] = o["LastModified"].timestamp()
        return out
    root = loc.removeprefix("file://")
    return {f"file://{d}/{n}": os.stat(f"{d}/{n}").st_mtime for d, _, names in os.walk(root) for n in names}


def read_table(table: Any) -> tuple[int, str]:
    t = table.refresh().scan().to_arrow().sort_by([("payload_id", "ascending"), ("ts", "ascending")])
    h = hashlib.sha256()
    for name in t.column_names:
        h.update(repr(t.column(name).to_pylist()).encode())
    return t.num_rows, h.hexdigest()


def _write(table: Any, path: str) -> None:
    with table.io.new_output(path).create(overwrite=True) as f:
        f.write(os.urandom(200 + len(path)))


def _set_age(path: str, clock: ManualClock, days: float) -> None:
    mtime = (clock.now() - timedelta(days=days)).timestamp()
    os.utime(path.removeprefix("file://"), (mtime, mtime))


def build(catalog: Any, clock: ManualClock, store: StateStore, db_url: str, young: bool = True,
          young_gap: float = 1.5) -> Scenario:
    """`young_gap`: real seconds between the old and young waves on S3; a subprocess's LIFECYCLE_FAKE_NOW clock
    runs on from when it starts, so CLI tests need a gap wider than that drift."""
    arch = build_archive(catalog, ArchiveSpec(
        partitions=[("apollo-7", date(2024, 3, 15)), ("apollo-8", date(2024, 3, 16))],
        files_per_partition=3, file_bytes=(2000, 4000), history_snapshots=4), clock)
    table = arch.table
    local = not table.location().startswith("s3://")
    base = table.location().rstrip("/")
    live = set(all_files(table))
    rows, checksum = read_table(table)

    def paths(sub: str, n: int) -> list[str]:
        return [f"{base}/{sub}/f-{uuid.uuid4().hex[:10]}.parquet" for _ in range(n)]

    old = {  # written first: older than 7 days
        "delete": paths("data/orphans", 24) + paths("data/mission_id=apollo-7/day=2024-03-15", 8)
        + paths("data/writer-stale", 8) + paths("metadata", 5),
        "active-writer": paths("data/writer-active", 8) + paths("data/orphans", 1),
        "compaction-staged": paths("data/stage", 2),
        "purge-queued": paths("data/purge", 2),
        "unguarded-journal": paths("data/stage", 1) + paths("data/purge", 1),
    }
    young_paths = paths("data/orphans", 10) + paths("data/writer-stale", 2) if young else []
    for group in old.values():
        for p in group:
            _write(table, p)
    if local:
        for p in live:
            _set_age(p, clock, 100)      # live files are old too: only reachability protects them
        for i, p in enumerate(p for g in old.values() for p in g):
            _set_age(p, clock, 7.01 + (i % 5) * 20)
        for p in young_paths:
            _write(table, p)
            _set_age(p, clock, (0.5, 3, 6.99)[len(p) % 3])
    else:
        boundary = max(all_files(table).values())
        if young_paths:
            wait_for(lambda: time.time() >= boundary + young_gap, timeout=10, what="a real-time boundary")
            for p in young_paths:
                _write(table, p)
            assert min(all_files(table)[p] for p in young_paths) > boundary
        clock.set(datetime.fromtimestamp(boundary, UTC) + timedelta(days=7, seconds=1))
    now = clock.now()
    with psycopg.connect(db_url, autocommit=True) as conn:
        for wid, beat, prefixes in (
            ("writer-active", now - timedelta(seconds=10), [f"{base}/data/writer-active/", old["active-writer"][-1]]),
            ("writer-stale", now - timedelta(hours=1), [f"{base}/data/writer-stale/"]),
        ):
            conn.execute("INSERT INTO writer_heartbeats VALUES (%s, 'test', %s, %s, %s)",
                         (wid, now - timedelta(hours=2), beat, prefixes))
    stage_plan = store.create_plan("compact", IDENT, "mission_id=apollo-7,day=2024-03-15", {}, None, entries={
        "stage": [NewEntry(p) for p in [*old["compaction-staged"], old["unguarded-journal"][0]]]})
    purge_plan = store.create_plan("expire", IDENT, "", {}, None, entries={
        "purge": [NewEntry(p) for p in [*old["purge-queued"], old["unguarded-journal"][1]]]})
    by_path = {e.path: e.entry_id for e in store.entries()}
    store.transition_entries([by_path[old["compaction-staged"][1]]], PENDING, WRITTEN)
    store.transition_entries([by_path[old["unguarded-journal"][0]]], PENDING, REMOVED)
    store.transition_entries([by_path[old["purge-queued"][1]]], PENDING, COPIED)
    store.transition_entries([by_path[old["unguarded-journal"][1]]], PENDING, DELETED)
    assert stage_plan.plan_id != purge_plan.plan_id
    return Scenario(
        table=table, live=live, rows=rows, checksum=checksum,
        expected_deleted=set(old["delete"]) | set(old["unguarded-journal"]),
        kept={"active-writer": set(old["active-writer"]), "compaction-staged": set(old["compaction-staged"]),
              "purge-queued": set(old["purge-queued"]), "too-young": set(young_paths)},
    )
