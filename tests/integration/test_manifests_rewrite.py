"""rewrite-manifests: 200 fast appends over four partitions → few partition-clustered manifests, one
`replace` snapshot, identical rows; resume after a crash; dry run and real run through the CLI."""

from __future__ import annotations

import dataclasses
import json
import random
import uuid
from datetime import date
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest
from pyiceberg.manifest import (
    ManifestContent,
    ManifestEntry,
    ManifestEntryStatus,
    read_manifest_list,
    write_manifest,
    write_manifest_list,
)
from pyiceberg.table.snapshots import Operation, Snapshot, Summary
from pyiceberg.table.update import AddSnapshotUpdate, AssertRefSnapshotId, SetSnapshotRefUpdate

from lifecycle.iceberg.datafiles import data_file_from_parquet
from lifecycle.jobs.base import DONE, DRY_RUN, NOTHING_TO_DO, JobContext, JobRequest
from lifecycle.jobs.runtime import execute
from lifecycle.lineage import REQUIRED_FIELDS
from lifecycle.state.models import COMMITTED, REMOVED
from lifecycle.state.models import DONE as PLAN_DONE
from lifecycle_cli.synth import ArchiveSpec, build_archive, make_rows, partition_path, synth_lineage, write_file
from tests.conftest import cli_env, run_cli, with_table_settings, write_config

IDENT = "archive.sda_observations"
PARTITIONS = [("apollo-7", date(2024, 3, 15)), ("apollo-7", date(2024, 3, 16)),
              ("gemini-4", date(2024, 3, 15)), ("gemini-4", date(2024, 3, 16))]
TARGET = 16 * 1024
APPENDS = 200


def build_fast_appended(catalog: Any, clock: Any) -> Any:
    """The synthetic table plus APPENDS fast-append snapshots (one tiny file each, round-robin over the
    partitions, one new manifest per snapshot), written directly and committed in ONE catalog commit (PyIceberg's
    own transaction replays metadata quadratically: minutes for 200 appends)."""
    spec = ArchiveSpec(partitions=PARTITIONS, files_per_partition=1, file_bytes=(1_500, 2_500))
    table = build_archive(catalog, spec, clock).table
    meta = table.metadata
    rng = random.Random(11)
    base = table.location().rstrip("/")
    manifests = list(read_manifest_list(table.io.new_input(meta.current_snapshot().manifest_list)))
    parent, seq, updates = meta.current_snapshot_id, meta.last_sequence_number, []
    for i in range(APPENDS):
        seq += 1
        snapshot_id = rng.randrange(1, 2**62)
        mission, day = PARTITIONS[i % len(PARTITIONS)]
        path = f"{partition_path(table, mission, day)}/fa-{i:04d}-{uuid.uuid4().hex[:6]}.parquet"
        write_file(table, path, make_rows(rng, mission, day, 2))
        entry = ManifestEntry.from_args(status=ManifestEntryStatus.ADDED, snapshot_id=snapshot_id,
                                        data_file=data_file_from_parquet(table.io, meta, path))
        with write_manifest(format_version=2, spec=meta.spec(), schema=meta.schema(),
                            output_file=table.io.new_output(f"{base}/metadata/{uuid.uuid4()}-m0.avro"),
                            snapshot_id=snapshot_id, avro_compression="deflate") as writer:
            writer.add_entry(entry)
        manifests.insert(0, writer.to_manifest_file())
        list_path = f"{base}/metadata/snap-{snapshot_id}-1-{uuid.uuid4()}.avro"
        with write_manifest_list(format_version=2, output_file=table.io.new_output(list_path),
                                 snapshot_id=snapshot_id, parent_snapshot_id=parent, sequence_number=seq,
                                 avro_compression="deflate") as lw:
            lw.add_manifests(manifests)
        manifests = list(read_manifest_list(table.io.new_input(list_path)))   # sequence numbers assigned
        snap = Snapshot(snapshot_id=snapshot_id, parent_snapshot_id=parent, sequence_number=seq,
                        timestamp_ms=meta.last_updated_ms + i + 1, manifest_list=list_path,
                        summary=Summary(operation=Operation.APPEND, **synth_lineage()),
                        schema_id=meta.current_schema_id)
        updates += [AddSnapshotUpdate(snapshot=snap),
                    SetSnapshotRefUpdate(ref_name="main", type="branch", snapshot_id=snapshot_id)]
        parent = snapshot_id
    catalog.commit_table(table, (AssertRefSnapshotId(ref="main", snapshot_id=meta.current_snapshot_id),),
                         tuple(updates))
    return table.refresh()


def sorted_rows(table: Any) -> pa.Table:
    return table.scan().to_arrow().sort_by([("mission_id", "ascending"), ("ts", "ascending"),
                                            ("payload_id", "ascending")])


def data_manifests(table: Any) -> list[Any]:
    snap = table.current_snapshot()
    return [m for m in read_manifest_list(table.io.new_input(snap.manifest_list)) if m.content == ManifestContent.DATA]


def entry_identities(table: Any) -> set[tuple[str, int, int, int]]:
    out = set()
    for mf in data_manifests(table):
        for e in mf.fetch_manifest_entry(table.io, discard_deleted=True):
            out.add((e.data_file.file_path, e.snapshot_id, e.sequence_number, e.file_sequence_number))
    return out


def local(path: str) -> Path:
    return Path(path.removeprefix("file://"))


@pytest.fixture
def small_ctx(ctx: JobContext) -> JobContext:
    return dataclasses.replace(ctx, settings=with_table_settings(ctx.settings, IDENT, manifest_target_bytes=TARGET))


def test_rewrite_consolidates_manifests_and_changes_no_data(catalog: Any, clock: Any, small_ctx: JobContext) -> None:
    table = build_fast_appended(catalog, clock)
    before_manifests = data_manifests(table)
    assert len(before_manifests) == APPENDS + 1
    total_bytes = sum(m.manifest_length for m in before_manifests)
    before_rows = sorted_rows(table)
    before_entries = entry_identities(table)
    before_snapshots = len(table.metadata.snapshots)

    result = execute(small_ctx, JobRequest("rewrite-manifests", IDENT))

    assert result.status == DONE
    table = table.refresh()
    after = data_manifests(table)
    assert len(after) <= total_bytes // TARGET + len(PARTITIONS)
    assert len(after) < 20
    assert len(table.metadata.snapshots) == before_snapshots + 1
    snap = table.current_snapshot()
    assert snap.summary.operation.value == "replace"
    assert all(snap.summary[f] for f in REQUIRED_FIELDS)
    assert snap.summary["lifecycle.job"] == "rewrite-manifests"
    assert sorted_rows(table).equals(before_rows)
    assert entry_identities(table) == before_entries          # snapshot ids and sequence numbers preserved
    statuses = {e.status for mf in after for e in mf.fetch_manifest_entry(table.io)}
    assert statuses == {ManifestEntryStatus.EXISTING}
    # clustered: walking the new manifests in order visits each partition in one run
    order = [tuple(e.data_file.partition[i] for i in range(2))
             for mf in after for e in mf.fetch_manifest_entry(table.io)]
    runs = [p for i, p in enumerate(order) if i == 0 or order[i - 1] != p]
    assert len(runs) == len(PARTITIONS)
    # old manifests stay until expiration; the journal says the staged ones were committed
    assert all(local(m.manifest_path).exists() for m in before_manifests)
    staged = small_ctx.store.entries(kind="stage-manifest", table_name=IDENT)
    assert len(staged) == len(after) + 1 and {e.state for e in staged} == {COMMITTED}
    [plan] = [p for p in [small_ctx.store.plan(staged[0].plan_id)] if p]
    assert plan.state == PLAN_DONE and snap.summary["lifecycle.plan-id"] == plan.plan_id

    again = execute(small_ctx, JobRequest("rewrite-manifests", IDENT))
    assert again.status == NOTHING_TO_DO
    assert len(table.refresh().metadata.snapshots) == before_snapshots + 1


def test_fresh_table_is_already_compact(catalog: Any, clock: Any, small_ctx: JobContext) -> None:
    build_archive(catalog, ArchiveSpec(partitions=PARTITIONS, files_per_partition=2, file_bytes=(1_500, 2_500)),
                  clock)
    result = execute(small_ctx, JobRequest("rewrite-manifests", IDENT, dry_run=True))
    assert result.status == NOTHING_TO_DO


def _cli(settings: Any, tmp_path: Path, *args: str, **env: str) -> Any:
    config = write_config(tmp_path / "lifecycle.toml", settings)
    return run_cli(["run", "rewrite-manifests", "--table", IDENT, *args], cli_env(config, **env))


def test_cli_dry_run_then_real_run(catalog: Any, clock: Any, small_ctx: JobContext, tmp_path: Path) -> None:
    table = build_fast_appended(catalog, clock)
    snapshots = len(table.metadata.snapshots)
    dry = _cli(small_ctx.settings, tmp_path, "--dry-run", "--json")
    assert dry.returncode == 0, dry.stderr
    out = json.loads(dry.stdout)
    assert out["status"] == DRY_RUN and out["plan"]["data_manifests"] == APPENDS + 1
    assert len(table.refresh().metadata.snapshots) == snapshots
    assert small_ctx.store.open_plans("rewrite-manifests") == []

    real = _cli(small_ctx.settings, tmp_path, "--json")
    assert real.returncode == 0, real.stderr
    assert json.loads(real.stdout)["status"] == DONE
    assert len(table.refresh().metadata.snapshots) == snapshots + 1


@pytest.mark.parametrize("crash_at", ["rewrite-manifests.after-stage:2", "rewrite-manifests.after-commit"])
def test_resume_after_sigkill(catalog: Any, clock: Any, small_ctx: JobContext, tmp_path: Path,
                              crash_at: str) -> None:
    table = build_fast_appended(catalog, clock)
    snapshots = len(table.metadata.snapshots)
    before_rows = sorted_rows(table)
    crashed = _cli(small_ctx.settings, tmp_path, LIFECYCLE_CRASH_AT=crash_at)
    assert crashed.returncode == -9
    [open_plan] = small_ctx.store.open_plans("rewrite-manifests", IDENT)
    staged_paths = [e.path for e in small_ctx.store.entries(plan_id=open_plan.plan_id, kind="stage-manifest")]

    rerun = _cli(small_ctx.settings, tmp_path, "--json")
    assert rerun.returncode == 0, rerun.stderr
    table = table.refresh()
    assert len(table.metadata.snapshots) == snapshots + 1       # exactly one rewrite landed
    assert sorted_rows(table).equals(before_rows)
    old = small_ctx.store.plan(open_plan.plan_id)
    assert old is not None
    if crash_at.endswith("after-commit"):
        assert old.state == PLAN_DONE
        assert table.current_snapshot().summary["lifecycle.plan-id"] == open_plan.plan_id
    else:
        assert old.state == "abandoned"
        assert {e.state for e in small_ctx.store.entries(plan_id=old.plan_id)} == {REMOVED}
        assert not any(local(p).exists() for p in staged_paths)


def test_concurrent_append_abandons_the_attempt_and_the_job_replans(catalog: Any, clock: Any,
                                                                   small_ctx: JobContext) -> None:
    from lifecycle.jobs.driver import attempt
    from lifecycle.manifests.job import RewriteManifests

    stale = build_fast_appended(catalog, clock)
    op, request = RewriteManifests(), JobRequest("rewrite-manifests", IDENT)
    planned = op.plan(small_ctx, request, stale)
    assert planned.plan is not None and not planned.plan.plan.compact
    # a writer commits between the plan and the rewrite's commit
    catalog.load_table(IDENT).append(make_rows(random.Random(5), "apollo-7", date(2024, 3, 15), 3),
                                     snapshot_properties=synth_lineage())
    expected = sorted_rows(catalog.load_table(IDENT))

    counts: dict[str, int | float] = {}
    assert attempt(op, small_ctx, request, stale, planned.plan, counts) is None   # lost the race: re-plan
    assert counts["conflicts"] == 1
    [abandoned] = [p for p in [small_ctx.store.plan(e.plan_id) for e in
                               small_ctx.store.entries(kind="stage-manifest")[:1]] if p]
    assert abandoned.state == "abandoned"
    staged = small_ctx.store.entries(plan_id=abandoned.plan_id)
    assert {e.state for e in staged} == {REMOVED} and not any(local(e.path).exists() for e in staged)

    result = execute(small_ctx, JobRequest("rewrite-manifests", IDENT))
    assert result.status == DONE
    assert sorted_rows(catalog.load_table(IDENT)).equals(expected)
