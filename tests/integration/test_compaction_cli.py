"""`lifecycle-cli run compact` as a real subprocess: SIGKILL crash points, resume, and bad input."""

from __future__ import annotations

import json
import math
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from lifecycle.jobs.base import JobContext
from lifecycle.state.models import ABANDONED, COMMITTED, COMMITTING, DONE, EXECUTING, REMOVED, WRITTEN
from tests.conftest import REPO, cli_env, run_cli, write_config
from tests.integration.test_compaction import TABLE, A, checksum, files_by_partition, make_archive, rows_of, scaled


def _config(ctx: JobContext, tmp_path: Path) -> Path:
    return write_config(tmp_path / "lifecycle.toml", ctx.settings)


def _killed(config: Path, crash_at: str) -> None:
    proc = subprocess.Popen([sys.executable, "-m", "lifecycle_cli", "run", "compact", "--table", TABLE,
                             "--partition", A],
                            env=cli_env(config, LIFECYCLE_CRASH_AT=crash_at), cwd=REPO,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    out, err = proc.communicate(timeout=240)
    assert proc.returncode == -signal.SIGKILL, (proc.returncode, out, err)


def test_killed_after_staging_then_rerun_completes(ctx: JobContext, tmp_path: Path) -> None:
    ctx = scaled(ctx, target_file_bytes=400_000)
    archive = make_archive(ctx)
    before = files_by_partition(archive.table)[A]
    sums = checksum(rows_of(archive.table))
    config = _config(ctx, tmp_path)
    _killed(config, "compact.after-stage:2")
    (killed,) = ctx.store.open_plans("compact", TABLE, A)
    assert killed.state == EXECUTING
    staged = ctx.store.entries(plan_id=killed.plan_id, kind="stage")
    written = [e.path for e in staged if e.state == WRITTEN]
    assert len(written) == 2 and len(staged) >= 3
    assert all(archive.table.io.new_input(p).exists() for p in written)
    assert files_by_partition(archive.table)[A] == before

    rerun = run_cli(["run", "compact", "--table", TABLE, "--partition", A, "--json"], cli_env(config))
    assert rerun.returncode == 0, rerun.stderr
    counts = json.loads(rerun.stdout)["counts"]
    assert counts["recovered_removed"] == 1 and counts["groups_committed"] == 1
    assert checksum(rows_of(archive.table)) == sums
    after = files_by_partition(archive.table)[A]
    assert len(after) == math.ceil(sum(before.values()) / 400_000)
    for e in staged:
        assert not archive.table.io.new_input(e.path).exists()
    assert ctx.store.plan(killed.plan_id).state == ABANDONED  # type: ignore[union-attr]
    assert {e.state for e in ctx.store.entries(plan_id=killed.plan_id, kind="stage")} == {REMOVED}


def test_killed_after_commit_then_rerun_finishes_without_rewriting(ctx: JobContext, tmp_path: Path) -> None:
    ctx = scaled(ctx)
    archive = make_archive(ctx)
    sums = checksum(rows_of(archive.table))
    config = _config(ctx, tmp_path)
    _killed(config, "compact.after-commit")
    (killed,) = ctx.store.open_plans("compact", TABLE, A)
    assert killed.state == COMMITTING
    archive.table.refresh()
    assert archive.table.current_snapshot().summary["lifecycle.plan-id"] == killed.plan_id
    files = files_by_partition(archive.table)[A]
    snapshots = len(archive.table.snapshots())

    rerun = run_cli(["run", "compact", "--table", TABLE, "--partition", A, "--json"], cli_env(config))
    assert rerun.returncode == 0, rerun.stderr
    counts = json.loads(rerun.stdout)["counts"]
    assert counts == {"recovered_committed": 1}
    assert files_by_partition(archive.table)[A] == files
    assert len(archive.table.snapshots()) == snapshots
    assert checksum(rows_of(archive.table)) == sums
    assert ctx.store.plan(killed.plan_id).state == DONE  # type: ignore[union-attr]
    assert {e.state for e in ctx.store.entries(plan_id=killed.plan_id, kind="stage")} == {COMMITTED}


@pytest.mark.parametrize("args, needle", [
    (["--table", "archive.no_such_table"], "no_such_table"),
    (["--table", TABLE, "--partition", "mission_id=apollo-7;day=2024-03-15"], "partition"),
    (["--table", TABLE, "--partition", "mission_id=apollo-7,day=2024-13-45"], "day"),
    (["--table", TABLE, "--partition", "mission_id=apollo-7,hour=2024-03-15-10"], "hour"),
])
def test_bad_input_exits_2_with_one_line_and_changes_nothing(
    ctx: JobContext, tmp_path: Path, args: list[str], needle: str
) -> None:
    ctx = scaled(ctx)
    archive = make_archive(ctx)
    before = files_by_partition(archive.table)
    snapshots = len(archive.table.snapshots())
    done = run_cli(["run", "compact", *args], cli_env(_config(ctx, tmp_path)))
    assert done.returncode == 2, (done.stdout, done.stderr)
    lines = [line for line in (done.stdout + done.stderr).splitlines() if line.strip()]
    assert len(lines) == 1 and needle in lines[0], lines
    assert files_by_partition(archive.table) == before and len(archive.table.snapshots()) == snapshots
    assert ctx.store.open_plans("compact") == [] and ctx.store.entries() == []


def test_cli_dry_run_prints_the_plan_and_writes_nothing(ctx: JobContext, tmp_path: Path) -> None:
    ctx = scaled(ctx)
    archive = make_archive(ctx)
    before = files_by_partition(archive.table)
    config = _config(ctx, tmp_path)
    text = run_cli(["run", "compact", "--table", TABLE, "--dry-run"], cli_env(config))
    assert text.returncode == 0, text.stderr
    assert f"{A}: binpack, 12 input files" in text.stdout and "planned output files" in text.stdout
    as_json = run_cli(["run", "compact", "--table", TABLE, "--partition", A, "--dry-run", "--json"], cli_env(config))
    plan = json.loads(as_json.stdout)["plan"]
    assert plan["partitions"][0]["planned_outputs"] == math.ceil(sum(before[A].values()) / 1_000_000)
    assert files_by_partition(archive.table) == before
    assert ctx.store.open_plans("compact") == [] and ctx.store.entries() == []
