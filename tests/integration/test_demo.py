"""`lifecycle-cli demo` as a new operator meets it (scripts/demo runs exactly this): the embedded default in
an empty folder, a real Celery worker, every job. It says where its PostgreSQL runs and stops it, prints
three commands that work, leaves work to plan, fills every dashboard panel and alert series, and exits
non-zero when a job fails."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from lifecycle.state import embedded_pg
from tests.unit.test_deploy_observability import DASHBOARD, EXTERNAL_METRICS, alert_rules, dashboard_exprs, selectors

pytestmark = [pytest.mark.slow, pytest.mark.timeout(1200)]


@pytest.fixture
def folder() -> Iterator[Path]:
    """An empty folder outside pytest's own temp root: as root, the embedded server runs as the `pgserver`
    user and opens the folder's parents to it, which a concurrent pytest session would close again."""
    path = Path(tempfile.mkdtemp(prefix="lifecycle-demo-test-"))
    yield path
    embedded_pg.stop(path / "lifecycle-data")
    shutil.rmtree(path, ignore_errors=True)


def operator_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("LIFECYCLE_", "PYICEBERG_", "PROMETHEUS_")) and k != "XDG_RUNTIME_DIR"}
    env["PATH"] = f"{Path(sys.executable).parent}:{env.get('PATH', '')}"   # the virtualenv's lifecycle-cli
    return {**env, **extra}


def cli(args: list[str], cwd: Path, env: dict[str, str], timeout: float = 900) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["lifecycle-cli", *args], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=timeout)


def queried_metrics() -> set[str]:
    exprs = dashboard_exprs(json.loads(DASHBOARD.read_text())) + [r["expr"] for r in alert_rules()]
    return {name for expr in exprs for name, _ in selectors(expr)[0] if name not in EXTERNAL_METRICS}


def test_the_demo_stops_its_database_says_what_to_try_next_and_fills_the_dashboard(folder: Path) -> None:
    tmp_path = folder
    env = operator_env()
    out = cli(["demo"], tmp_path, env)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    assert out.stderr == ""                                   # no third-party warning, no log noise
    text = out.stdout
    data = tmp_path / "lifecycle-data"
    m = re.search(r"embedded PostgreSQL pid (\d+), data (\S+), socket in (\S+)", text)
    assert m and Path(m.group(2)) == (data / "pg").resolve(), text
    assert f"embedded PostgreSQL pid {m.group(1)} ({(data / 'pg').resolve()}) stopped" in text
    assert "lifecycle-cli demo --stop` stops it" in text
    assert not embedded_pg.server(data).running

    steps = text.split("next, try:\n", 1)[1].strip().splitlines()
    assert len(steps) == 3 and all(s.strip().startswith("lifecycle-cli ") for s in steps), steps
    results = [cli(s.split("#", 1)[0].split()[1:], tmp_path, env, timeout=300) for s in steps]
    for step, res in zip(steps, results, strict=True):
        assert res.returncode == 0 and res.stderr == "", (step, res.stdout, res.stderr)
    plan = results[0].stdout   # run compact --dry-run: the partition that landed after the run
    assert "mission_id=apollo-8,day=2024-03-16: binpack, 60 input files" in plan, plan
    assert "232 object(s)" in results[2].stdout

    # the steps started the database again; `demo --stop` stops it
    assert embedded_pg.server(data).running
    stop = cli(["demo", "--stop"], tmp_path, env, timeout=120)
    assert stop.returncode == 0 and stop.stdout.startswith("stopped embedded PostgreSQL pid"), stop
    assert not embedded_pg.server(data).running

    # every series the dashboard and the alert rules query came out of the worker's /metrics
    scraped = (data / "demo-metrics.prom").read_text()
    names = {line.split("{")[0].split(" ")[0] for line in scraped.splitlines() if line and not line.startswith("#")}
    assert queried_metrics() - names == set()
    for direction in ("read", "write", "copy"):
        assert f'lifecycle_bandwidth_bytes_total{{direction="{direction}"}}' in scraped, direction


def test_the_demo_exits_non_zero_when_a_job_fails(folder: Path) -> None:
    tmp_path = folder
    # compaction refuses a malformed thread count: its runs fail, the other jobs still run
    out = cli(["demo"], tmp_path, operator_env(LIFECYCLE_COMPACTION_THREADS="many"))
    assert out.returncode == 1, out.stdout[-3000:]
    assert re.search(r"compact \[mission_id=apollo-7,day=2024-03-15\]: failed", out.stdout), out.stdout
    assert "expire: done" in out.stdout and "next, try:" in out.stdout
    assert out.stderr.strip().splitlines() == ["lifecycle-cli: error: demo: a job did not finish (see above)"]
    assert not embedded_pg.server(tmp_path / "lifecycle-data").running
