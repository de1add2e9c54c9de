"""Merge-on-read tables compacted by us, checked by Apache Iceberg Java (Spark) on the same catalog.

Spark writes a format-2 merge-on-read table (DELETE and UPDATE write position deletes); we compact it: Spark and
PyIceberg read exactly the rows they read before, the delete files that no longer apply are gone from the new
snapshot (Iceberg's `.delete_files`, `.files`), and Iceberg's `remove_orphan_files` and ours agree. A twin table
compacted by Iceberg's own `rewrite_data_files` (remove-dangling-deletes) keeps the same delete files we keep.
Equality deletes (as Flink writes them) are applied where exact, and refuse only their partition elsewhere.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pyarrow as pa

from lifecycle.lineage import lineage_properties
from tests.iceberg_writes import commit_equality_delete
from tests.interop.lake import Lake, cutoff_days_ago, norm

T, TWIN, EQ = "ns.mor", "ns.mor_twin", "ns.mor_eq"


def s(table: str) -> str:
    return f"archive.{table}"


def build(lake: Lake, table: str) -> None:
    """3 missions x 4 small files; deletes in m0 and m1 (merged per data file by Spark), then 2 more m0 files."""
    lake.create(table)
    for i in range(4):
        lake.insert(table, i * 100, (i + 1) * 100)
    lake.sql(f"DELETE FROM {s(table)} WHERE mission IN ('m0', 'm1') AND id % 7 = 0")
    lake.sql(f"UPDATE {s(table)} SET value = -1 WHERE mission = 'm0' AND id % 11 = 0")
    lake.sql(f"INSERT INTO {s(table)} SELECT id, 'm0', DATE'2024-01-01', id / 8.0, 'late' FROM range(1000, 1040)")
    lake.sql(f"INSERT INTO {s(table)} SELECT id, 'm0', DATE'2024-01-02', id / 8.0, 'late' FROM range(1040, 1080)")


def delete_files(lake: Lake, table: str) -> dict[str, tuple[int, str]]:
    """Iceberg's view of the live delete files: path -> (content, partition's mission)."""
    return {norm(r[0]): (r[1], r[2].mission) for r in
            lake.sql(f"SELECT file_path, content, partition FROM {s(table)}.delete_files")}


def test_spark_merge_on_read_table_compacted_with_deletes_applied_and_dangling_deletes_removed(lake: Lake) -> None:
    build(lake, T)
    want = lake.rows(T)
    assert lake.py_rows(T) == want
    before = delete_files(lake, T)
    assert {m for _, m in before.values()} == {"m0", "m1"} and {c for c, _ in before.values()} == {1}
    data_before = {norm(r[0]) for r in lake.sql(f"SELECT file_path FROM {s(T)}.files WHERE content = 0")}
    # m0: 6 small files (a candidate); m1 and m2: 4 each, below min_small_files and m1's deletes are light
    lake.configure(T, small_file_bytes=64 << 20, min_small_files=5, retention_days=0, min_snapshots_to_keep=1,
                   purge_delay_hours=0)

    out = lake.run("compact", T)
    print("compact", out["counts"])
    assert out["status"] == "done" and out["counts"]["partitions"] == 1, out
    m0 = {p for p, (_, m) in before.items() if m == "m0"}
    assert out["counts"]["delete_files_removed"] == len(m0) > 0
    assert lake.rows(T) == want, "Spark reads other rows after our compaction"
    assert lake.py_rows(T) == want, "PyIceberg reads other rows after our compaction"
    after = delete_files(lake, T)
    assert set(after) == set(before) - m0 and {m for _, m in after.values()} == {"m1"}
    files = lake.sql(f"SELECT file_path, content FROM {s(T)}.files")
    assert {norm(p) for p, c in files if c != 0} == set(after), "`.files` and `.delete_files` agree"
    assert not {norm(p) for p, c in files if c == 0} >= data_before, "m0's data files were rewritten"
    assert lake.metadata_view(T) == lake.pyiceberg_view(T), "Iceberg's metadata tables disagree with PyIceberg"
    snap = lake.sql(f"SELECT summary FROM {s(T)}.snapshots ORDER BY committed_at DESC LIMIT 1")[0][0]
    assert snap["removed-delete-files"] == str(len(m0)) and snap["total-delete-files"] == str(len(after))

    lake.age_all(T, 30)
    assert lake.java_orphans(T, cutoff_days_ago(2)) == lake.our_orphans(T) == set()
    lake.run("expire", T)
    later = (datetime.now(UTC) + timedelta(days=2)).isoformat()   # past the purge delay and the skew margin
    purged = lake.run("purge", T, LIFECYCLE_FAKE_NOW=later)
    print("purge", purged["counts"])
    gone = lake.all_files(T)
    assert not m0 & gone, "the removed delete files were purged once no snapshot read them"
    lake.age_all(T, 30)
    assert lake.java_orphans(T, cutoff_days_ago(2)) == lake.our_orphans(T) == set()
    assert lake.rows(T) == want

    # The same table compacted by Iceberg itself keeps exactly the delete files we kept (m1's).
    build(lake, TWIN)
    assert lake.rows(TWIN) == want
    lake.sql(f"CALL archive.system.rewrite_data_files(table => '{TWIN}', options => map("
             "'min-input-files', '5', 'remove-dangling-deletes', 'true'))")
    assert lake.rows(TWIN) == want
    assert sorted(delete_files(lake, TWIN).values()) == sorted(after.values())


def test_equality_deletes_are_applied_where_exact_and_refuse_only_their_partition(lake: Lake) -> None:
    lake.create(EQ)
    for i in range(3):
        lake.insert(EQ, i * 100, (i + 1) * 100)
    table = lake.catalog.load_table(EQ)
    props = lineage_properties("flink-upserts", "flink 1.20")

    def first(mission: str) -> object:
        return next(iter(table.refresh().scan(row_filter=f"mission == '{mission}'").plan_files())).file

    m0, m1 = first("m0"), first("m1")
    commit_equality_delete(table, m0, pa.table({"id": pa.array([0, 3, 150, None], pa.int64())}), props)
    commit_equality_delete(table, m1, pa.table({"value": pa.array([1 / 8.0, 4 / 8.0])}), props)
    want = lake.rows(EQ)
    assert len(want) == 300 - 3 - 2, "Spark applies both equality deletes"
    lake.configure(EQ, small_file_bytes=64 << 20, min_small_files=2)

    out = lake.run("compact", EQ)
    print("compact", out["counts"], out.get("detail"))
    assert out["status"] == "done" and out["counts"]["partitions_refused"] == 1, out
    assert out["counts"]["partitions"] == 2 and out["counts"]["delete_files_removed"] == 1
    assert any(line.startswith("mission=m1: refused") and "floating point" in line for line in out["detail"])
    assert lake.rows(EQ) == want, "Spark reads other rows after our compaction"
    left = delete_files(lake, EQ)
    assert sorted(left.values()) == [(2, "m1")], "m0's equality delete no longer applies: it went in the commit"
    assert lake.metadata_view(EQ) == lake.pyiceberg_view(EQ)
