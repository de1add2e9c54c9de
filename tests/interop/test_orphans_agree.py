"""Our `clean-orphans --dry-run` and Iceberg's `remove_orphan_files(dry_run)` list the same files on the same
Spark-written table: Hadoop `.crc` sidecars, `_SUCCESS`, `_temporary/` and other hidden paths are never orphans,
the folders of a partition field whose name starts with `_` are ordinary data folders."""

from __future__ import annotations

from tests.interop.lake import Lake, cutoff_days_ago, norm

T = "ns.sensors"
S = f"archive.{T}"


def test_clean_orphans_and_icebergs_remove_orphan_files_list_the_same_files(lake: Lake) -> None:
    lake.create(T, partitioned_by="_src, mission", columns="_src STRING, id BIGINT, mission STRING, value DOUBLE")
    for i in range(3):
        lake.sql(f"INSERT INTO {S} SELECT IF(id % 2 = 0, 'radar', 'optic'), id, concat('m', CAST(id % 2 AS STRING)), "
                 f"id / 4.0 FROM range({i * 40}, {(i + 1) * 40})")
    lake.sql(f"DELETE FROM {S} WHERE id % 9 = 0")
    rows = lake.rows(T)
    sidecars = {p for p in lake.all_files(T) if p.rsplit("/", 1)[1].startswith(".") and p.endswith(".crc")}
    assert len(sidecars) >= 10, "Spark (Hadoop's local file system) writes a .crc beside every file"
    lake.age_all(T, 20)

    orphans = {lake.plant(T, rel) for rel in (
        "data/_src=radar/mission=m0/orphan-1.parquet",   # inside a hidden-named partition field's folders
        "data/orphan-2.parquet",
        "metadata/orphan-3.avro",
        "metadata/00042-0f0e0d0c.metadata.json",         # a metadata file no log references
        "stray.bin",                                     # directly under the location
    )}
    hidden = {lake.plant(T, rel) for rel in (
        "data/_SUCCESS",
        "data/_temporary/0/_temporary/attempt_0/part-00000.parquet",
        "data/.hidden.parquet",
        "data/_src=radar/mission=m0/.orphan-1.parquet.crc",
        "data/_other=1/x.parquet",                       # `_other` is no partition field
        ".staging/x.parquet",
    )}
    young = lake.plant(T, "data/young.parquet", days=0)
    lake.configure(T, orphan_min_age_days=7)

    java = lake.java_orphans(T, cutoff_days_ago(2))
    plan = lake.run("clean-orphans", T, "--dry-run")["plan"]
    ours = {norm(c["path"]) for c in plan["candidates"]}
    assert java == orphans, f"Iceberg: extra {sorted(java - orphans)}, missing {sorted(orphans - java)}"
    assert ours == java, f"ours only {sorted(ours - java)}, Iceberg only {sorted(java - ours)}"
    assert plan["kept"]["hidden"] >= len(sidecars) + len(hidden)
    assert plan["kept"]["too-young"] == 1 and young not in ours

    out = lake.run("clean-orphans", T)
    assert out["counts"]["deleted"] == len(orphans)
    assert not orphans & lake.all_files(T) and hidden | sidecars | {young} <= lake.all_files(T)
    assert lake.rows(T) == rows == lake.py_rows(T)
