"""/metrics of a worker started exactly as the README says: `celery -A workers.app worker -Q compaction`
in a folder holding `lifecycle.toml`, with no PROMETHEUS_MULTIPROC_DIR (nor any test-only variable). Its
pool children's samples must reach what the main process serves; its logs are JSON lines."""

from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
import sys
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import redis

from tests.conftest import run_cli, wait_for
from tests.integration import test_fleet as fleet_tests
from tests.integration.test_fleet import TABLE, Fleet, sample

make_fleet = fleet_tests.make_fleet
redis_db = fleet_tests.redis_db


def readme_env() -> dict[str, str]:
    """The operator's shell: no PROMETHEUS_MULTIPROC_DIR, no LIFECYCLE_* test knobs, the venv on PATH."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("LIFECYCLE_", "PROMETHEUS_", "PYICEBERG_")) and k.lower() != "prometheus_multiproc_dir"}
    env["PATH"] = f"{Path(sys.executable).parent}:{env.get('PATH', '')}"
    env["LIFECYCLE_METRICS_ADDR"] = "127.0.0.1"  # loopback only on a shared test machine (documented variable)
    return env


def json_lines(text: str) -> list[dict[str, Any]]:
    out = []
    for line in text.splitlines():
        if line.startswith("{"):
            out.append(json.loads(line))
    return out


def scrape(port: int) -> str | None:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as resp:
            return str(resp.read().decode())
    except OSError:
        return None


def test_a_worker_started_as_the_readme_says_serves_its_childrens_samples_and_logs_json(
    make_fleet: Callable[..., Fleet], redis_db: redis.Redis,
) -> None:
    from tests.conftest import free_port

    fleet = make_fleet()
    port = free_port()
    config = fleet.config.read_text().replace("[fleet]\n", f"[fleet]\nmetrics_port = {port}\n", 1)
    (fleet.tmp / "lifecycle.toml").write_text(config)          # ./lifecycle.toml: no LIFECYCLE_CONFIG needed
    log_path = fleet.tmp / "readme-worker.log"
    with log_path.open("wb") as log:
        proc = subprocess.Popen(["celery", "-A", "workers.app", "worker", "-Q", "compaction"], cwd=fleet.tmp,
                                env=readme_env(), stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    fleet.procs.append(proc)
    wait_for(lambda: scrape(port) is not None or proc.poll() is not None, timeout=90, what="/metrics up")
    assert proc.poll() is None, log_path.read_text()[-3000:]

    partition = sorted(fleet.archive.data_files)[0]
    files = len(fleet.archive.data_files[partition])
    out = run_cli(["enqueue", "compact", "--table", TABLE, "--partition", partition], fleet.env())
    assert out.returncode == 0, out.stderr
    wait_for(lambda: [r["state"] for r in fleet.runs()] == ["done"], timeout=120,
             what="the compaction run done\n" + log_path.read_text()[-3000:])

    def compacted() -> str | None:
        text = scrape(port) or ""
        return text if sample(text, "files_compacted_total", table=TABLE) == files else None

    text = wait_for(compacted, timeout=30, what=f"files_compacted_total{{table={TABLE!r}}} == {files}")
    assert sample(text, "lifecycle_job_runs_total", job="compact", table=TABLE, outcome="done") == 1
    assert (sample(text, "lifecycle_bandwidth_bytes_total", direction="read") or 0) > 0
    assert (sample(text, "lifecycle_bandwidth_bytes_total", direction="write") or 0) > 0

    # the logs: one JSON object a line, our events with their fields
    events = json_lines(log_path.read_text())
    by_name: dict[str, list[dict[str, Any]]] = {}
    for e in events:
        by_name.setdefault(str(e.get("event")), []).append(e)
    assert by_name["worker.metrics"][0]["port"] == port
    finish = by_name["job.finish"][0]
    assert (finish["job"], finish["table"], finish["partition"], finish["status"]) == ("compact", TABLE, partition,
                                                                                      "done")
    assert finish["counts"]["files_in"] == files
    assert by_name["job.start"][0]["run_id"] == finish["run_id"]
    assert sum(g["files_in"] for g in by_name["compact.group"]) == files

    # the metrics folder it made for itself: private, unpredictable, gone when the worker stops
    folder = Path(by_name["worker.metrics"][0]["folder"])
    assert folder.name.startswith("lifecycle-prometheus-") and folder.name != f"lifecycle-prometheus-{proc.pid}"
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    os.killpg(proc.pid, signal.SIGTERM)
    proc.wait(timeout=60)
    assert not folder.exists()


def test_a_cli_run_with_the_metrics_folder_missing_creates_it_and_works(
    make_fleet: Callable[..., Fleet], tmp_path: Path,
) -> None:
    fleet = make_fleet(files=3)
    missing = tmp_path / "not" / "yet" / "there"
    out = run_cli(["run", "compact", "--table", TABLE, "--dry-run"],
                  fleet.env(PROMETHEUS_MULTIPROC_DIR=str(missing)))
    assert out.returncode == 0, out.stderr
    assert "input files" in out.stdout and out.stderr == ""
    assert missing.is_dir()
