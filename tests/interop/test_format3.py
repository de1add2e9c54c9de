"""Format 3 (Spark, deletion vectors): PyIceberg reads it but cannot write it. The jobs that write metadata refuse
the table up front, one line naming it and the reason, exit 1, nothing rewritten; the other configured tables go
on; clean-orphans and purge still work on it."""

from __future__ import annotations

import pytest

from tests.interop.lake import Lake

V3 = "ns.dv"
V2 = "ns.plain"


@pytest.fixture
def tables(lake: Lake) -> Lake:
    lake.create(V3, format_version=3)
    for i in range(3):
        lake.insert(V3, i * 100, (i + 1) * 100)
    lake.sql(f"DELETE FROM archive.{V3} WHERE id % 5 = 0")
    kinds = {(r[0], r[1]) for r in lake.sql(f"SELECT content, file_format FROM archive.{V3}.delete_files")}
    assert kinds == {(1, "PUFFIN")}, f"deletion vectors expected, got {kinds}"
    lake.create(V2)
    for i in range(3):
        lake.insert(V2, i * 100, (i + 1) * 100)
    for t in (V3, V2):
        lake.configure(t, small_file_bytes=64 << 20, min_small_files=2, retention_days=0, purge_delay_hours=0,
                       orphan_min_age_days=7)
    return lake


def test_every_job_that_writes_metadata_refuses_a_format_3_table_up_front(tables: Lake) -> None:
    lake = tables
    rows, files = lake.rows(V3), lake.all_files(V3)
    metadata = lake.catalog.load_table(V3).metadata_location
    for job, args in [(job, args) for job in ("compact", "expire", "rewrite-manifests", "compact-schema-history")
                      for args in ((), ("--dry-run",))]:
        out = lake.cli("run", job, "--table", V3, *args)
        assert out.returncode == 1, out.stdout + out.stderr
        lines = out.stderr.strip().splitlines()
        assert len(lines) == 1 and "Traceback" not in out.stderr, out.stderr
        assert lines[0].startswith(f"lifecycle-cli: error: {job} {V3}: refused: the table is format-version 3"), lines
        assert "PyIceberg" in lines[0]
    assert lake.catalog.load_table(V3).metadata_location == metadata, "no commit"
    assert lake.all_files(V3) == files, "nothing written or deleted"
    assert lake.rows(V3) == rows == lake.py_rows(V3)


def test_with_several_tables_the_format_3_one_fails_and_the_others_go_on(tables: Lake) -> None:
    lake = tables
    v2_files = len(lake.metadata_view(V2)["files"])
    out = lake.cli("run", "compact")
    assert out.returncode == 1, out.stdout + out.stderr
    assert f"compact {V2}: done" in out.stdout, out.stdout
    assert len(lake.metadata_view(V2)["files"]) < v2_files
    errors = [ln for ln in out.stderr.splitlines() if ln.startswith("lifecycle-cli: error:")]
    assert len(errors) == 1 and f"compact {V3}: refused" in errors[0], out.stderr


def test_clean_orphans_and_purge_keep_working_on_a_format_3_table(tables: Lake) -> None:
    lake = tables
    rows = lake.rows(V3)
    lake.age_all(V3, 20)
    orphan = lake.plant(V3, "data/orphan.parquet")
    assert lake.our_orphans(V3) == {orphan}
    out = lake.run("clean-orphans", V3)
    assert out["status"] == "done" and out["counts"]["deleted"] == 1
    assert orphan not in lake.all_files(V3)
    assert lake.run("purge", V3)["status"] == "nothing-to-do"
    assert lake.rows(V3) == rows == lake.py_rows(V3)
