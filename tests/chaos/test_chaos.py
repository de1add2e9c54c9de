"""Fault suite: every job killed with SIGKILL at every named crash point and at random moments, rerun, and
the invariants checked (content identical, nothing reachable missing, nothing deleted twice, no staged
leftovers, each purged file in the cold tier once).

The default run is the short variant (every crash point, one random kill per job). The long variant runs
by hand: CHAOS_RANDOM_KILLS=10 pytest tests/chaos -m chaos  (60 random kills over the six jobs).
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from lifecycle.jobs.base import JOB_NAMES, JobContext
from lifecycle.settings import Settings
from tests.chaos.invariants import check_all, content_checksum
from tests.chaos.scenarios import TABLE_SETTINGS, Scenario, build, crash_points
from tests.conftest import REPO, cli_env, with_table_settings, write_config

pytestmark = pytest.mark.chaos
RANDOM_KILLS = int(os.environ.get("CHAOS_RANDOM_KILLS", "1"))
TOTALS: dict[str, dict[str, int]] = {}


def _cli(scenario: Scenario, config: Path, extra: dict[str, str]) -> subprocess.Popen[str]:
    env = cli_env(config, **scenario.env, **extra)
    return subprocess.Popen([sys.executable, "-m", "lifecycle_cli", "run", scenario.job, "--table", scenario.table],
                            env=env, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _finish(scenario: Scenario, config: Path) -> float:
    """Rerun until the job completes cleanly (a rerun may itself stop for a checkpoint; never > 3 tries)."""
    for _ in range(3):
        started = time.monotonic()
        proc = _cli(scenario, config, {})
        _, err = proc.communicate(timeout=300)
        if proc.returncode == 0:
            return time.monotonic() - started
    raise AssertionError(f"{scenario.job} on {scenario.table} did not complete after a crash: {err[-2000:]}")


def _settings_for(settings: Settings, table: str) -> Settings:
    return with_table_settings(settings, table, **TABLE_SETTINGS)


def _scenario(ctx: JobContext, settings: Settings, tmp_path: Path, job: str, name: str) -> tuple[Scenario, Path]:
    scenario = build(ctx, job, name)
    config = write_config(tmp_path / f"{name}.toml", _settings_for(settings, scenario.table))
    return scenario, config


@pytest.mark.parametrize("job", JOB_NAMES)
def test_kill_at_every_crash_point_and_at_random(job: str, ctx: JobContext, settings: Settings,
                                                 tmp_path: Path) -> None:
    points = crash_points().get(job, [])
    ctx.settings = _settings_for(settings, f"archive.{job.replace('-', '_')}_0")
    survived = {"crash_points": 0, "random_kills": 0, "completed_before_kill": 0}
    reports: list[dict[str, Any]] = []
    durations: list[float] = []
    rng = random.Random(hash(job) & 0xFFFF)
    runs = [("point", p) for p in points] + [("random", None)] * RANDOM_KILLS
    for i, (kind, point) in enumerate(runs):
        name = f"{job.replace('-', '_')}_{i}"
        ctx.settings = _settings_for(settings, f"archive.{name}")
        scenario, config = _scenario(ctx, ctx.settings, tmp_path, job, name)
        table = ctx.catalog.load_table(scenario.table)
        reference = content_checksum(table)
        if kind == "point":
            proc = _cli(scenario, config, {"LIFECYCLE_CRASH_AT": str(point)})
            proc.communicate(timeout=300)
            assert proc.returncode == -signal.SIGKILL, f"{point} was never reached (exit {proc.returncode})"
            survived["crash_points"] += 1
        else:
            delay = rng.uniform(1.0, 1.0 + (max(durations) if durations else 4.0))
            proc = _cli(scenario, config, {})
            try:
                proc.wait(timeout=delay)  # the fault injector's timing, not synchronisation
                survived["completed_before_kill"] += 1
            except subprocess.TimeoutExpired:
                proc.send_signal(signal.SIGKILL)
                proc.wait(timeout=30)
                survived["random_kills"] += 1
        durations.append(_finish(scenario, config))
        report = check_all(ctx.catalog.load_table(scenario.table), ctx.store, reference)
        reports.append({"run": kind, "point": point, **report})
        assert report["ok"], report
    TOTALS[job] = {**survived, "runs": len(runs)}
    if job == "purge":
        objs = ctx.store.cold_objects(f"archive.{job}_0")
        assert objs, "purge copied nothing to the cold tier"
