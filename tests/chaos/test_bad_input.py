"""Bad input through the CLI and settings: each case is one clear stderr line, the documented exit status
(2 for bad input and unreachable services), no traceback, and nothing changed (no plan rows, the table's
metadata location unchanged)."""

from __future__ import annotations

import time
from datetime import date
from pathlib import Path
from typing import Any

import pytest

from lifecycle.jobs.base import JobContext
from lifecycle.settings import Settings
from lifecycle_cli.synth import ArchiveSpec, build_archive
from tests.conftest import cli_env, free_port, run_cli, write_config

pytestmark = pytest.mark.chaos
TABLE = "archive.bad_input"


@pytest.fixture
def world(ctx: JobContext, settings: Settings, tmp_path: Path) -> dict[str, Any]:
    spec = ArchiveSpec(name="bad_input", partitions=[("apollo-7", date(2024, 3, 15))], files_per_partition=3,
                       file_bytes=(20_000, 40_000))
    archive = build_archive(ctx.catalog, spec, ctx.clock)
    config = write_config(tmp_path / "lifecycle.toml", settings)
    return {"ctx": ctx, "config": config, "location": archive.table.metadata_location, "tmp": tmp_path}


def _plan_rows(ctx: JobContext) -> int:
    with ctx.store.cursor() as cur:
        row = cur.execute("SELECT count(*) AS n FROM plans").fetchone()
    return int(row["n"]) if row else 0


def _assert_refused(world: dict[str, Any], args: list[str], env: dict[str, str], needle: str,
                    status: int = 2, max_seconds: float = 60.0) -> None:
    started = time.monotonic()
    proc = run_cli(args, env, timeout=max_seconds + 30)
    elapsed = time.monotonic() - started
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert proc.returncode == status, (proc.returncode, proc.stderr[-2000:])
    assert len(lines) == 1, f"expected one stderr line, got: {proc.stderr[-2000:]}"
    assert "Traceback" not in proc.stderr + proc.stdout
    assert needle.lower() in lines[0].lower(), lines[0]
    assert elapsed < max_seconds, f"took {elapsed:.1f}s: must fail fast"
    ctx: JobContext = world["ctx"]
    assert _plan_rows(ctx) == 0, "a refused command wrote a plan row"
    assert ctx.catalog.load_table(TABLE).metadata_location == world["location"], "table metadata changed"


@pytest.mark.parametrize(("args", "needle"), [
    (["run", "defragment", "--table", TABLE], "defragment"),
    (["run", "compact", "--table", "archive.no_such_table"], "no_such_table"),
    (["run", "compact", "--table", TABLE, "--partition", "mission_id"], "partition"),
    (["run", "compact", "--table", TABLE, "--partition", "mission_id=apollo-7,day=not-a-date"], "day"),
    (["run", "compact", "--table", TABLE, "--partition", "planet=mars"], "planet"),
    (["run", "expire", "--table", TABLE, "--partition", "mission_id=apollo-7"], "partition"),
    (["enqueue", "defragment", "--table", TABLE], "defragment"),
])
def test_bad_cli_arguments(world: dict[str, Any], args: list[str], needle: str) -> None:
    _assert_refused(world, args, cli_env(world["config"]), needle)


@pytest.mark.parametrize(("extra", "needle"), [
    ("[bandwidth]\nspeed_limit = 3\n", "speed_limit"),
    ("[windows]\ncompaction_paused = [\"25:00-26:00\"]\n", "window"),
    ("[windows]\nexpiration_allowed = [\"06:00-06:00\"]\n", "window"),
    ("[windows]\nexpiration_allowed = [\"midnight\"]\n", "window"),
    ("[bandwidth]\nlifecycle_share = 0\n", "lifecycle_share"),
    ("[bandwidth]\nlifecycle_share = 1.5\n", "lifecycle_share"),
    (f'[tables."{TABLE}"]\norphan_min_age_days = 0\n', "orphan_min_age_days"),
    (f'[tables."{TABLE}"]\nmin_snapshots_to_keep = 0\n', "min_snapshots_to_keep"),
    ("[mystery]\nx = 1\n", "mystery"),
])
def test_bad_settings(world: dict[str, Any], extra: str, needle: str) -> None:
    config = write_config(world["tmp"] / "bad.toml", world["ctx"].settings, extra=extra)
    for job in ("compact", "clean-orphans"):
        _assert_refused(world, ["run", job, "--table", TABLE], cli_env(config), needle)


def test_unreachable_database(world: dict[str, Any]) -> None:
    env = cli_env(world["config"], LIFECYCLE_DATABASE_URL=f"postgresql://postgres@127.0.0.1:{free_port()}/nothing")
    _assert_refused(world, ["run", "compact", "--table", TABLE], env, "127.0.0.1", max_seconds=30)


def test_unreachable_broker(world: dict[str, Any]) -> None:
    env = cli_env(world["config"], LIFECYCLE_BROKER_URL=f"redis://127.0.0.1:{free_port()}/0")
    _assert_refused(world, ["enqueue", "expire", "--table", TABLE], env, "broker", max_seconds=30)


def test_a_bad_compaction_thread_count(world: dict[str, Any]) -> None:
    env = cli_env(world["config"], LIFECYCLE_COMPACTION_THREADS="-2")
    _assert_refused(world, ["run", "compact", "--table", TABLE], env, "LIFECYCLE_COMPACTION_THREADS")
