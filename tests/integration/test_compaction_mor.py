"""Merge-on-read compaction without Spark: position and equality deletes written as another engine writes them
(tests.iceberg_writes), compacted through the job a user runs. Rows read afterwards are exactly the rows a scan
returned before; the delete files that no longer apply are gone from the new snapshot, in the same commit;
equality deletes that cannot be applied refuse their partition and only that one."""

from __future__ import annotations

import random
from datetime import date
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pytest
from pyiceberg.manifest import DataFile, ManifestContent, ManifestEntryStatus
from pyiceberg.table import Table

from lifecycle.jobs.base import DONE, NOTHING_TO_DO, JobContext
from lifecycle.lineage import lineage_properties
from lifecycle_cli.synth import ArchiveSpec, add_small_files
from tests.iceberg_writes import commit_equality_delete, commit_position_delete, commit_position_deletes
from tests.integration.test_compaction import TABLE, A, checksum, compact, make_archive, rows_of, scaled

B = "mission_id=gemini-4,day=2024-03-15"
PARTS = [("apollo-7", date(2024, 3, 15)), ("gemini-4", date(2024, 3, 15))]


def _props() -> dict[str, str]:
    return lineage_properties("ingest-7", "ingest 1.0+abc")


def _files(table: Table, partition: str) -> list[DataFile]:
    mission = partition.split(",")[0].split("=")[1]
    table.refresh()
    return sorted((t.file for t in table.scan(row_filter=f"mission_id == '{mission}'").plan_files()),
                  key=lambda f: f.file_path)


def _rows(table: Table, partition: str) -> pa.Table:
    """The partition's rows as PyIceberg's scan returns them (pruned to the partition, deletes applied)."""
    mission = partition.split(",")[0].split("=")[1]
    return table.refresh().scan(row_filter=f"mission_id == '{mission}'").to_arrow()


def _live_deletes(table: Table) -> list[str]:
    table.refresh()
    return sorted(table.inspect.delete_files()["file_path"].to_pylist())


def _entries(table: Table) -> list[tuple[ManifestContent, ManifestEntryStatus, str]]:
    snap = table.refresh().current_snapshot()
    assert snap is not None
    return [(m.content, e.status, e.data_file.file_path) for m in snap.manifests(table.io)
            for e in m.fetch_manifest_entry(table.io, discard_deleted=False) if e.snapshot_id == snap.snapshot_id]


@pytest.mark.parametrize("strategy", ["binpack", "zorder"])
def test_position_deletes_are_applied_and_the_dangling_delete_files_removed_in_the_same_commit(
        ctx: JobContext, strategy: str) -> None:
    ctx = scaled(ctx)
    props = {"lifecycle.zorder-columns": "payload_id,sensor_kind"} if strategy == "zorder" else {}
    archive = make_archive(ctx, files=[12, 12], partitions=PARTS, **props)
    table = archive.table
    victims = _files(table, A)[:3]
    for i, victim in enumerate(victims):
        commit_position_delete(table, victim, [0, 2, 5 + i], _props())
    other = _files(table, B)[0]
    commit_position_delete(table, other, [1], _props())          # in a partition this run does not touch
    before = {p: checksum(rows_of(table, p)) for p in (A, B)}
    assert before[A][0] == sum(f.record_count for f in _files(table, A)) - 9
    doomed = sorted(set(_live_deletes(table)) - set(_live_deletes_of(table, other)))

    result = compact(ctx, A)
    assert result.status == DONE, result
    assert result.counts["groups_committed"] >= 1 and result.counts["delete_files_removed"] == 3
    plan = ctx.store.plan(table.refresh().current_snapshot().summary["lifecycle.plan-id"])
    assert plan is not None and plan.payload["strategy"]["name"] == strategy
    assert {p: checksum(rows_of(table, p)) for p in (A, B)} == before
    assert _live_deletes(table) == _live_deletes_of(table, other), "only the delete of the untouched file stays"
    removed = sorted(p for c, s, p in _entries(table)
                     if c == ManifestContent.DELETES and s == ManifestEntryStatus.DELETED)
    assert removed == doomed, "the rewrite's own snapshot marks the dangling delete files DELETED"
    summary = table.current_snapshot().summary
    assert summary["removed-delete-files"] == "3" and summary["removed-position-deletes"] == "9"
    assert summary["total-delete-files"] == "1" and summary["total-position-deletes"] == "1"
    assert int(summary["total-records"]) == sum(t.file.record_count for t in table.scan().plan_files())


def _live_deletes_of(table: Table, data_file: DataFile) -> list[str]:
    table.refresh()
    return sorted(d.file_path for t in table.scan().plan_files() if t.file.file_path == data_file.file_path
                  for d in t.delete_files)


def test_a_large_file_with_many_deletes_is_rewritten_alone(ctx: JobContext) -> None:
    """Fewer small files than the threshold, but one large file whose deletes remove over 30 % of its rows
    (delete-ratio-threshold): it is rewritten on its own, with its deletes applied and removed."""
    ctx = scaled(ctx, small_file_bytes=60_000)
    archive = make_archive(ctx, files=3, file_bytes=(150_000, 160_000))
    table = archive.table
    big = _files(table, A)[1]
    commit_position_delete(table, big, list(range(0, big.record_count, 2)), _props())   # half its rows
    before = checksum(rows_of(table, A))
    assert compact(ctx, A, dry_run=True).plan["partitions"][0]["input_files"] == 1
    result = compact(ctx, A)
    assert result.status == DONE and result.counts["files_in"] == 1 and result.counts["delete_files_removed"] == 1
    assert checksum(rows_of(table, A)) == before
    after = _files(table, A)
    assert big.file_path not in {f.file_path for f in after} and len(after) == 3
    assert _live_deletes(table) == []


def test_a_file_whose_every_row_is_deleted_is_removed_without_an_output(ctx: JobContext) -> None:
    ctx = scaled(ctx, small_file_bytes=60_000)
    archive = make_archive(ctx, files=2, file_bytes=(150_000, 160_000))
    table = archive.table
    gone = _files(table, A)[0]
    commit_position_delete(table, gone, list(range(gone.record_count)), _props())
    before = checksum(rows_of(table, A))
    kept = [f.file_path for f in _files(table, A) if f.file_path != gone.file_path]
    result = compact(ctx, A)
    assert result.status == DONE and result.counts["files_out"] == 0
    assert checksum(rows_of(table, A)) == before
    assert [f.file_path for f in _files(table, A)] == kept and _live_deletes(table) == []


def _delete_rows(rows: pa.Table, column: str, values: list[Any]) -> pa.Table:
    return rows.filter(pc.invert(pc.is_in(rows[column], value_set=pa.array(values, rows[column].type))))


def test_equality_deletes_are_applied_or_their_partition_refused_without_failing_the_table(ctx: JobContext) -> None:
    ctx = scaled(ctx)
    archive = make_archive(ctx, files=[12, 12], partitions=PARTS,
                           **{"lifecycle.compaction.equality-delete-max-rows": "4"})
    table = archive.table
    rows_a, rows_b = _rows(table, A), _rows(table, B)
    kill_a = [*rows_a["payload_id"].to_pylist()[:5:2], None]      # three ids (and null: matches no row here)
    commit_equality_delete(table, _files(table, A)[0], pa.table({"payload_id": pa.array(kill_a, pa.int64())}),
                           _props())
    kill_b = rows_b["payload_id"].to_pylist()[:5]                  # five rows: over the cap of 4
    commit_equality_delete(table, _files(table, B)[0], pa.table({"payload_id": pa.array(kill_b, pa.int64())}),
                           _props())
    with pytest.raises(ValueError, match="equality deletes"):
        table.refresh().scan().to_arrow()                           # PyIceberg cannot read the table now

    dry = compact(ctx, None, dry_run=True)
    assert [p["partition"] for p in dry.plan["partitions"]] == [A] and list(dry.plan["refused"]) == [B]
    result = compact(ctx, None)
    assert result.status == DONE, result
    assert result.counts["partitions_refused"] == 1 and result.counts["groups_committed"] >= 1
    assert any(line.startswith(f"{B}: refused") and "equality-delete-max-rows=4" in line for line in result.detail)
    assert result.to_dict()["detail"] == result.detail
    want_a = _delete_rows(rows_a, "payload_id", kill_a)
    assert want_a.num_rows < rows_a.num_rows
    assert checksum(_rows(table, A)) == checksum(want_a)           # A reads again: its eq delete was dropped
    assert {p.rsplit("/", 1)[1][:9] for p in _live_deletes(table)} == {"eq-delete"}
    assert len(_live_deletes(table)) == 1, "only B's equality delete (refused, still applying) stays"
    assert compact(ctx, B).status == NOTHING_TO_DO


def test_a_delete_still_applying_to_a_file_left_alone_stays(ctx: JobContext) -> None:
    """A partition-scoped position delete (bounds spanning several files) naming small files and a large one:
    the small files are rewritten with it applied, and it stays, because the large file still needs it."""
    ctx = scaled(ctx, small_file_bytes=100_000, min_small_files=3)
    archive = make_archive(ctx, files=14, file_bytes=(40_000, 150_000))
    table = archive.table
    files = _files(table, A)
    small = [f for f in files if f.file_size_in_bytes < 100_000][:2]
    large = next(f for f in files if f.file_size_in_bytes >= 100_000)
    commit_position_deletes(table, [(small[0], [0, 1]), (small[1], [3]), (large, [2])], _props())
    before = checksum(rows_of(table, A))
    result = compact(ctx, A)
    assert result.status == DONE and result.counts["delete_files_removed"] == 0
    assert checksum(rows_of(table, A)) == before
    assert large.file_path in {f.file_path for f in _files(table, A)} and len(_live_deletes(table)) == 1


def test_a_delete_committed_during_the_rewrite_commit_is_kept_and_the_retry_removes_only_dangling_ones(
        ctx: JobContext, monkeypatch: pytest.MonkeyPatch) -> None:
    """While the replace commit is in flight a writer deletes a row of a file that is not an input and appends
    a file: PyIceberg retries on the new head, where the dangling set is decided again; the writer's delete
    stays (it applies to a live file), the rewrite's dangling deletes go, no row comes back."""
    ctx = scaled(ctx, small_file_bytes=100_000, min_small_files=3)
    archive = make_archive(ctx, files=14, file_bytes=(40_000, 150_000))
    table = archive.table
    files = _files(table, A)
    small = [f for f in files if f.file_size_in_bytes < 100_000]
    large = next(f for f in files if f.file_size_in_bytes >= 100_000)
    for f in small[:2]:
        commit_position_delete(table, f, [1], _props())
    ours = _live_deletes(table)
    real = type(ctx.catalog).commit_table
    raced: list[int] = []

    def race(self: Any, tbl: Any, requirements: Any, updates: Any) -> Any:
        if not raced and any(getattr(u, "snapshot", None) is not None
                             and u.snapshot.summary.operation.value == "replace" for u in updates):
            commit_position_delete(ctx.catalog.load_table(TABLE), large, [0], _props())
            raced.append(add_small_files(ctx.catalog.load_table(TABLE), ArchiveSpec(
                partitions=[PARTS[0]], files_per_partition=1, file_bytes=(20_000, 30_000)), random.Random(3))[1])
        return real(self, tbl, requirements, updates)

    monkeypatch.setattr(type(ctx.catalog), "commit_table", race)
    result = compact(ctx, A)
    assert raced and result.status == DONE and result.counts["delete_files_removed"] == 2
    theirs = sorted(set(_live_deletes(table)) - set(ours))
    assert len(theirs) == 1 and not set(ours) & set(_live_deletes(table))
    assert rows_of(table, A).num_rows == archive.rows - 3 + raced[0]   # three rows deleted, the append kept
    assert large.file_path in {f.file_path for f in _files(table, A)}


def test_the_fleet_fan_out_sends_a_partition_that_needs_compaction_for_its_deletes(ctx: JobContext) -> None:
    from lifecycle.compaction.fanout import fanout_plan

    ctx = scaled(ctx, small_file_bytes=60_000)
    archive = make_archive(ctx, files=[3, 3], partitions=PARTS, file_bytes=(150_000, 160_000))
    table = archive.table
    assert fanout_plan(table, TABLE, ctx.settings.for_table(TABLE))[0] == []
    big = _files(table, B)[1]
    commit_position_delete(table, big, list(range(0, big.record_count, 2)), _props())
    assert fanout_plan(table.refresh(), TABLE, ctx.settings.for_table(TABLE))[0] == [B]
