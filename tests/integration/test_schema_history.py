"""compact-schema-history: 5 schemas and 3 specs, some still used by retained snapshots or manifests → only
the unused ones go; every retained snapshot reads the same rows; the metadata log is bounded and the files
that left it are deleted."""

from __future__ import annotations

import dataclasses
import json
import random
from datetime import date
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest
from pyiceberg.transforms import BucketTransform
from pyiceberg.types import StringType

from lifecycle.jobs.base import DONE, NOTHING_TO_DO, JobContext, JobRequest
from lifecycle.jobs.runtime import execute
from lifecycle.state.models import DELETED
from lifecycle.state.models import DONE as PLAN_DONE
from lifecycle_cli.synth import ArchiveSpec, create_table, make_rows
from tests.conftest import cli_env, run_cli, with_table_settings, write_config

IDENT = "archive.sda_observations"
LOG_MAX = 3


def _append(table: Any, extra: list[str], seed: int) -> Any:
    rows = make_rows(random.Random(seed), "apollo-7", date(2024, 3, 15), 5)
    for name in extra:
        rows = rows.append_column(name, pa.array([f"{name}-{seed}"] * rows.num_rows, pa.string()))
    table.append(rows, snapshot_properties={"writer.id": "t", "writer.commit_hash": "t",
                                            "writer.invocation_id": str(seed)})
    return table.refresh()


def build_evolved(catalog: Any) -> tuple[Any, int]:
    """schema 0 / spec 0 never used by data; A written with schema 1 / spec 1; schema 2 unused; B written with
    schema 3 / spec 2; schema 4 current. Then A is expired: schema 1 is unused, spec 1 is still used by A's
    manifest, which B's manifest list carries."""
    table = create_table(catalog, ArchiveSpec())
    with table.update_schema() as u:
        u.add_column("note_1", StringType())
    with table.update_spec() as s:
        s.add_identity("sensor_kind")
    table = _append(table.refresh(), ["note_1"], 1)
    a_id = table.current_snapshot().snapshot_id
    with table.update_schema() as u:
        u.add_column("note_2", StringType())
    with table.update_schema() as u:
        u.add_column("note_3", StringType())
    with table.update_spec() as s:
        s.add_field("payload_id", BucketTransform(4), "payload_bucket")
    table = _append(table.refresh(), ["note_1", "note_2", "note_3"], 2)
    with table.update_schema() as u:
        u.add_column("note_4", StringType())
    table = table.refresh()
    table.maintenance.expire_snapshots().by_id(a_id).commit()
    return table.refresh(), a_id


def snapshot_rows(table: Any) -> dict[int, pa.Table]:
    return {s.snapshot_id: table.scan(snapshot_id=s.snapshot_id).to_arrow()
            .sort_by([("payload_id", "ascending"), ("ts", "ascending")]) for s in table.metadata.snapshots}


@pytest.fixture
def log_ctx(ctx: JobContext) -> JobContext:
    return dataclasses.replace(ctx, settings=with_table_settings(ctx.settings, IDENT, metadata_log_max=LOG_MAX))


def test_only_unused_schemas_and_specs_are_removed(catalog: Any, log_ctx: JobContext) -> None:
    table, _ = build_evolved(catalog)
    assert sorted(s.schema_id for s in table.metadata.schemas) == [0, 1, 2, 3, 4]
    assert sorted(s.spec_id for s in table.metadata.partition_specs) == [0, 1, 2]
    before_rows = snapshot_rows(table)
    old_log = [e.metadata_file for e in table.metadata.metadata_log]
    assert len(old_log) > LOG_MAX

    dry = execute(log_ctx, JobRequest("compact-schema-history", IDENT, dry_run=True))
    assert dry.plan["schemas_removed"] == [0, 1, 2] and dry.plan["specs_removed"] == [0]
    assert catalog.load_table(IDENT).metadata_location == table.metadata_location

    result = execute(log_ctx, JobRequest("compact-schema-history", IDENT))

    assert result.status == DONE
    table = catalog.load_table(IDENT)
    assert sorted(s.schema_id for s in table.metadata.schemas) == [3, 4]
    assert sorted(s.spec_id for s in table.metadata.partition_specs) == [1, 2]
    after_rows = snapshot_rows(table)
    assert after_rows.keys() == before_rows.keys()
    for snap_id, rows in before_rows.items():
        assert after_rows[snap_id].equals(rows)
    new_log = [e.metadata_file for e in table.metadata.metadata_log]
    assert len(new_log) <= LOG_MAX
    gone = [f for f in old_log if f not in new_log]
    assert gone
    assert not any(Path(f.removeprefix("file://")).exists() for f in gone)
    assert all(Path(f.removeprefix("file://")).exists() for f in [*new_log, table.metadata_location])
    journal = log_ctx.store.entries(kind="metadata-delete", table_name=IDENT)
    assert sorted(e.path for e in journal) == sorted(gone) and {e.state for e in journal} == {DELETED}
    assert log_ctx.store.plan(journal[0].plan_id).state == PLAN_DONE  # type: ignore[union-attr]

    again = execute(log_ctx, JobRequest("compact-schema-history", IDENT))
    assert again.status == NOTHING_TO_DO


def test_cli_dry_run_then_real_run(catalog: Any, log_ctx: JobContext, tmp_path: Path) -> None:
    table, _ = build_evolved(catalog)
    config = write_config(tmp_path / "lifecycle.toml", log_ctx.settings)
    env = cli_env(config)
    dry = run_cli(["run", "compact-schema-history", "--table", IDENT, "--dry-run", "--json"], env)
    assert dry.returncode == 0, dry.stderr
    assert json.loads(dry.stdout)["plan"]["specs_removed"] == [0]
    assert catalog.load_table(IDENT).metadata_location == table.metadata_location

    real = run_cli(["run", "compact-schema-history", "--table", IDENT, "--json"], env)
    assert real.returncode == 0, real.stderr
    out = json.loads(real.stdout)
    assert out["status"] == DONE and out["counts"]["schemas_removed"] == 3
    assert len(catalog.load_table(IDENT).metadata.metadata_log) <= LOG_MAX


def test_resume_after_sigkill_between_commit_and_deletes(catalog: Any, log_ctx: JobContext, tmp_path: Path) -> None:
    table, _ = build_evolved(catalog)
    old_log = [e.metadata_file for e in table.metadata.metadata_log]
    env = cli_env(write_config(tmp_path / "lifecycle.toml", log_ctx.settings),
                  LIFECYCLE_CRASH_AT="compact-schema-history.after-commit")
    crashed = run_cli(["run", "compact-schema-history", "--table", IDENT], env)
    assert crashed.returncode == -9
    new_log = [e.metadata_file for e in catalog.load_table(IDENT).metadata.metadata_log]
    gone = [f for f in old_log if f not in new_log]
    assert gone and all(Path(f.removeprefix("file://")).exists() for f in gone)   # committed, not yet deleted

    env.pop("LIFECYCLE_CRASH_AT")
    rerun = run_cli(["run", "compact-schema-history", "--table", IDENT, "--json"], env)
    assert rerun.returncode == 0, rerun.stderr
    assert json.loads(rerun.stdout)["counts"]["plans_recovered"] == 1
    assert not any(Path(f.removeprefix("file://")).exists() for f in gone)
