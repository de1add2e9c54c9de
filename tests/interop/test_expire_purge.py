"""Expiration against Iceberg's own: after our expire + purge, Iceberg's orphan scan finds nothing we left
behind and every purged file is in the cold tier; with equivalent settings (older_than, retain_last, refs) our
expire and Iceberg's `expire_snapshots` expire the same snapshot ids."""

from __future__ import annotations

import os
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg

from lifecycle.clock import SystemClock
from lifecycle.state.store import StateStore
from tests.interop.lake import Lake, cutoff_days_ago, norm, ts_literal

T = "ns.readings"
S = f"archive.{T}"


def test_after_our_expire_and_purge_iceberg_finds_nothing_left_and_every_purged_file_is_in_the_cold_tier(
    lake: Lake,
) -> None:
    lake.create(T)
    for i in range(4):
        lake.insert(T, i * 100, (i + 1) * 100)
    lake.sql(f"DELETE FROM {S} WHERE mission = 'm0' AND id % 7 = 0")
    rows = lake.rows(T)
    lake.configure(T, small_file_bytes=64 << 20, min_small_files=2, retention_days=0, min_snapshots_to_keep=1,
                   purge_delay_hours=0)
    assert lake.run("compact", T)["status"] == "done"
    expired = lake.run("expire", T)
    assert expired["counts"]["snapshots"] >= 5 and expired["counts"]["files_data"] > 0
    later = (datetime.now(UTC) + timedelta(hours=1)).isoformat()   # past the delay (0) and the skew margin
    purged = lake.run("purge", T, LIFECYCLE_FAKE_NOW=later)
    assert lake.rows(T) == rows

    store = StateStore(lake.db_url, SystemClock())
    try:
        journal = store.entries(kind="purge", table_name=T)
        cold = {norm(o.source_path): o for o in store.cold_objects(T)}
    finally:
        store.close()
    not_deleted = sorted((e.state, norm(e.path), str(e.info)) for e in journal if e.state != "deleted")
    assert not not_deleted, (f"purge left {len(not_deleted)} of {len(journal)} journaled files "
                             f"({purged['counts']}), e.g. {not_deleted[:3]}")
    deleted = {norm(e.path) for e in journal}
    assert set(cold) == deleted, "every purged file has a cold-tier record"
    for source, obj in cold.items():
        copy = Path(norm(obj.cold_uri))
        assert copy.is_file() and copy.stat().st_size == obj.bytes, f"cold copy of {source}"
        assert not os.path.exists(source)

    lake.age_all(T, 20)
    assert lake.java_orphans(T, cutoff_days_ago(2)) == set(), "Iceberg finds files our expiration left behind"
    lake.configure(T, orphan_min_age_days=7)
    assert lake.our_orphans(T) == set()


def _snapshot(lake: Lake, table: str) -> int:
    return int(lake.sql(f"SELECT snapshot_id FROM archive.{table}.snapshots ORDER BY committed_at DESC LIMIT 1")[0][0])


def _state(lake: Lake, table: str) -> tuple[set[int], set[str]]:
    snaps = {int(r[0]) for r in lake.sql(f"SELECT snapshot_id FROM archive.{table}.snapshots")}
    refs = {str(r[0]) for r in lake.sql(f"SELECT name FROM archive.{table}.refs")}
    return snaps, refs


def test_our_expire_and_icebergs_expire_snapshots_expire_the_same_snapshots(lake: Lake) -> None:
    lake.create(T)
    lake.insert(T, 0, 50)
    s1 = _snapshot(lake, T)
    lake.insert(T, 50, 100)
    s2 = _snapshot(lake, T)
    lake.sql(f"ALTER TABLE {S} CREATE BRANCH keep2 AS OF VERSION {s2} WITH SNAPSHOT RETENTION 2 SNAPSHOTS")
    lake.insert(T, 100, 120, target=f"{T}.branch_keep2")
    lake.insert(T, 120, 140, target=f"{T}.branch_keep2")
    lake.insert(T, 200, 250)
    s3 = _snapshot(lake, T)
    lake.insert(T, 250, 300)
    s4 = lake.catalog.load_table(T).metadata.current_snapshot_id
    s4_ms = lake.catalog.load_table(T).metadata.snapshot_by_id(s4).timestamp_ms  # type: ignore[union-attr]
    lake.sql(f"ALTER TABLE {S} CREATE TAG old AS OF VERSION {s1}")
    tbl = lake.catalog.load_table(T)
    tbl.manage_snapshots().create_tag(s3, "stale", max_ref_age_ms=1).commit()  # a ref past its max age
    lake.insert(T, 300, 350)
    lake.insert(T, 350, 400)
    s6 = lake.catalog.load_table(T).metadata.current_snapshot_id
    lake.insert(T, 400, 450)
    lake.sql(f"CALL archive.system.rollback_to_snapshot('{T}', {s6})")   # the last snapshot is on no ref now
    before, refs_before = _state(lake, T)
    assert refs_before == {"main", "keep2", "old", "stale"}
    meta = lake.catalog.load_table(T).metadata_location
    lake.sql(f"CALL archive.system.register_table(table => 'ns.java_copy', metadata_file => '{meta}')")

    # ours: retention 1 day on a clock set so that the cutoff falls right after s4
    lake.configure(T, retention_days=1, min_snapshots_to_keep=1, purge_delay_hours=24)
    fake_now = datetime.fromtimestamp((s4_ms + 1) / 1000, UTC) + timedelta(days=1)
    out = lake.run("expire", T, LIFECYCLE_FAKE_NOW=fake_now.isoformat())
    assert out["status"] == "done", out
    with psycopg.connect(lake.db_url) as conn:
        payload = conn.execute("SELECT payload FROM plans WHERE job = 'expire' AND table_name = %s", (T,)).fetchone()
    assert payload is not None
    cutoff = datetime.fromtimestamp(payload[0]["cutoff_ms"] / 1000, UTC)
    ours, our_refs = _state(lake, T)

    # Iceberg's, with the same cutoff and retain_last on the copy
    lake.sql(f"CALL archive.system.expire_snapshots(table => 'ns.java_copy', older_than => {ts_literal(cutoff)}, "
             "retain_last => 1)")
    theirs, their_refs = _state(lake, "ns.java_copy")

    assert before - ours == before - theirs, f"ours expired {before - ours}, Iceberg {before - theirs}"
    assert our_refs == their_refs == {"main", "keep2", "old"}
    assert {s2, s3} <= before - ours and s1 in ours, "the cutoff split the history: s1 kept by its tag"
    assert set(payload[0]["expire_ids"]) == before - ours
