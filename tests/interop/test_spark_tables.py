"""Spark-written format-2 tables (merge-on-read deletes and updates, a partition-spec change, schema changes, a
tag and a branch) through every job of ours, run as a user runs them: after each, Spark reads exactly the rows
it read before (main, the tag, the branch), PyIceberg reads the same, and Iceberg's own metadata tables
(`.files`, `.manifests`, `.snapshots`, `.refs`) agree with PyIceberg's reading of the metadata we wrote."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from tests.interop.lake import Lake

T = "ns.events"
S = f"archive.{T}"


def build(lake: Lake) -> dict[str, Any]:
    lake.create(T)
    for i in range(4):
        lake.insert(T, i * 100, (i + 1) * 100)             # 4 commits x 3 partitions: small files
    lake.sql(f"DELETE FROM {S} WHERE mission = 'm0' AND id % 7 = 0")           # position deletes
    lake.sql(f"UPDATE {S} SET value = -1 WHERE mission = 'm0' AND id % 11 = 0")  # delete + insert
    lake.sql(f"ALTER TABLE {S} CREATE TAG before_spec")
    lake.sql(f"ALTER TABLE {S} ADD PARTITION FIELD days(day)")                  # spec 1
    lake.insert(T, 400, 500)
    lake.insert(T, 500, 600)
    lake.sql(f"ALTER TABLE {S} ADD COLUMN extra STRING")                         # schema 1
    lake.sql(f"ALTER TABLE {S} DROP COLUMN extra")                               # schema 2
    lake.sql(f"ALTER TABLE {S} CREATE BRANCH audit")
    lake.insert(T, 600, 650, target=f"{T}.branch_audit")
    lake.insert(T, 700, 750)
    lake.sql(f"DELETE FROM {S} WHERE id % 13 = 0 AND id >= 400")                # deletes under the new spec
    tag = lake.catalog.load_table(T).metadata.refs["before_spec"].snapshot_id
    return {"main": lake.rows(T), "tag": lake.rows(T, "before_spec"), "branch": lake.rows(T, "audit"),
            "tag_id": tag}


def check(lake: Lake, want: dict[str, Any], step: str) -> None:
    assert lake.rows(T) == want["main"], f"after {step}: Spark reads other rows on main"
    assert lake.rows(T, "before_spec") == want["tag"], f"after {step}: Spark reads other rows at the tag"
    assert lake.rows(T, "audit") == want["branch"], f"after {step}: Spark reads other rows on the branch"
    assert lake.py_rows(T) == want["main"], f"after {step}: PyIceberg reads other rows than Spark"
    assert lake.py_rows(T, want["tag_id"]) == want["tag"], f"after {step}: PyIceberg reads the tag differently"
    assert lake.metadata_view(T) == lake.pyiceberg_view(T), f"after {step}: Iceberg's metadata tables disagree"


def test_a_spark_written_table_goes_through_every_job_and_spark_reads_the_same_rows(lake: Lake) -> None:
    want = build(lake)
    assert len(want["main"]) > 600 and want["tag"] != want["main"] and want["branch"] != want["main"]
    lake.configure(T, small_file_bytes=64 << 20, min_small_files=2, retention_days=0, min_snapshots_to_keep=1,
                   purge_delay_hours=0, manifest_target_bytes=8 << 20, metadata_log_max=5)
    check(lake, want, "nothing (Spark and PyIceberg agree on the table as written)")
    before = lake.metadata_view(T)

    compacted = lake.run("compact", T)
    check(lake, want, "compact")
    print("compact", compacted["counts"])
    assert compacted["status"] == "done", compacted
    after_compact = lake.metadata_view(T)
    assert len(after_compact["files"]) < len(before["files"]), "compaction rewrote nothing"

    manifests = lake.run("rewrite-manifests", T)
    print("rewrite-manifests", manifests["counts"])
    check(lake, want, "rewrite-manifests")
    assert len(lake.metadata_view(T)["manifests"]) < len(after_compact["manifests"])

    expired = lake.run("expire", T)
    print("expire", expired["counts"])
    check(lake, want, "expire")
    view = lake.metadata_view(T)
    assert {name for name, _, _ in view["refs"]} == {"main", "before_spec", "audit"}
    assert len(view["snapshots"]) == 3, "only the three ref heads are left"

    later = (datetime.now(UTC) + timedelta(days=2)).isoformat()   # past the purge delay and the skew margin
    purged = lake.run("purge", T, LIFECYCLE_FAKE_NOW=later)
    print("purge", purged["counts"])
    assert purged["counts"]["deleted"] > 0 and purged["counts"]["skipped"] == 0, purged["counts"]
    check(lake, want, "purge")

    schemas = lake.run("compact-schema-history", T)
    print("compact-schema-history", schemas["counts"])
    check(lake, want, "compact-schema-history")
    assert 1 not in lake.catalog.load_table(T).schemas(), "the schema with `extra` is used by nothing left"

    lake.age_all(T, 30)
    cleaned = lake.run("clean-orphans", T)
    print("clean-orphans", cleaned["counts"])
    check(lake, want, "clean-orphans")
