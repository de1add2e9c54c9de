"""Check Flower's task list in a real headless browser: job, table and partition visible without a click,
and its API read-only for its login. Run by scripts/flower-check; see docs/operations.md.

On loopback only: a Redis broker (a db of its own, flushed), the embedded PostgreSQL in a temporary folder,
a `celery -A workers.app worker`, `celery -A workers.app flower` with basic auth and no other flag (the
defaults of workers/flower_defaults.py), Debian's chromium driven through chromedriver's WebDriver API.
Exits 0 when every check holds, 1 otherwise; writes the screenshot of the task list.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from datetime import date
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
TABLE = "archive.sda_observations"
PARTS = [("apollo-7", date(2024, 3, 15)), ("apollo-7", date(2024, 3, 16)), ("apollo-8", date(2024, 3, 15))]
CHROME_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
               "--disable-component-update", "--no-first-run", "--window-size=1920,640"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait(predicate: Any, timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise SystemExit(f"flower-check: timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(0.3)


def http(method: str, url: str, body: Any = None, auth: str | None = None) -> tuple[int, Any]:
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, method=method, headers={"Content-Type": "application/json"})
    if auth:
        req.add_header("Authorization", "Basic " + base64.b64encode(auth.encode()).decode())
    try:
        with urllib.request.urlopen(req, timeout=60) as resp:
            raw = resp.read()
            status = resp.status
    except urllib.error.HTTPError as exc:
        raw, status = exc.read(), exc.code
    except OSError:
        return 0, None
    try:
        return status, json.loads(raw) if raw else None
    except ValueError:
        return status, raw.decode(errors="replace")


class Browser:
    """Headless Chromium through chromedriver's W3C WebDriver API (plain HTTP, no client library)."""

    def __init__(self, workdir: Path) -> None:
        self.port = free_port()
        self.proc = subprocess.Popen([shutil.which("chromedriver") or "chromedriver", f"--port={self.port}"],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.base = f"http://127.0.0.1:{self.port}"
        wait(lambda: http("GET", f"{self.base}/status")[0] == 200, 30, "chromedriver")
        caps = {"capabilities": {"alwaysMatch": {"browserName": "chrome", "goog:chromeOptions": {
            "binary": shutil.which("chromium") or "/usr/bin/chromium",
            "args": [*CHROME_ARGS, f"--user-data-dir={workdir / 'chromium'}"]}}}}
        status, body = http("POST", f"{self.base}/session", caps)
        if status != 200:
            raise SystemExit(f"flower-check: chromium did not start: {body}")
        self.session = f"{self.base}/session/{body['value']['sessionId']}"

    def cdp(self, cmd: str, params: dict[str, Any]) -> None:
        http("POST", f"{self.session}/goog/cdp/execute", {"cmd": cmd, "params": params})

    def get(self, url: str) -> None:
        http("POST", f"{self.session}/url", {"url": url})

    def script(self, js: str) -> Any:
        return http("POST", f"{self.session}/execute/sync", {"script": js, "args": []})[1]["value"]

    def screenshot(self, path: Path) -> None:
        path.write_bytes(base64.b64decode(http("GET", f"{self.session}/screenshot")[1]["value"]))

    def close(self) -> None:
        http("DELETE", self.session)
        self.proc.terminate()
        self.proc.wait(timeout=30)


ROWS_JS = """
const heads = Array.from(document.querySelectorAll('#tasks-table thead th')).map(th => th.innerText.trim());
const rows = Array.from(document.querySelectorAll('#tasks-table tbody tr'))
  .map(tr => Array.from(tr.querySelectorAll('td')).map(td => td.innerText.trim()));
const clipped = Array.from(document.querySelectorAll('#tasks-table tbody tr'))
  .map(tr => Array.from(tr.querySelectorAll('td')).map(td => td.scrollWidth > td.clientWidth + 1));
return {heads: heads, rows: rows, clipped: clipped};
"""


def setup(work: Path, redis_url: str) -> dict[str, str]:
    from lifecycle.iceberg.catalog import open_catalog
    from lifecycle.settings import load
    from lifecycle_cli.synth import ArchiveSpec, build_archive

    config = work / "lifecycle.toml"
    config.write_text(
        f'[state]\ndata_dir = "{work / "data"}"\n[fleet]\nbroker_url = "{redis_url}"\nredis_url = "{redis_url}"\n'
        f'[tables."{TABLE}"]\nsmall_file_bytes = 200000\nmin_small_files = 3\ntarget_file_bytes = 1000000\n')
    settings = load(str(config))
    build_archive(open_catalog(settings), ArchiveSpec(partitions=PARTS, files_per_partition=4,
                                                      file_bytes=(20_000, 40_000)))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LIFECYCLE_", "PROMETHEUS_", "FLOWER_"))}
    env.update(LIFECYCLE_CONFIG=str(config), PATH=f"{Path(sys.executable).parent}:{env.get('PATH', '')}")
    return env


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--redis", default=os.environ.get("LIFECYCLE_CHECK_REDIS", "redis://127.0.0.1:6379/15"),
                        help="a Redis db this check may flush (default: %(default)s)")
    parser.add_argument("--screenshot", default=str(REPO / "docs" / "flower-tasks.png"))
    args = parser.parse_args()

    import redis

    from lifecycle.state import embedded_pg

    redis.Redis.from_url(args.redis).flushdb()
    work = Path(tempfile.mkdtemp(prefix="lifecycle-flower-check-"))
    procs: list[subprocess.Popen[bytes]] = []
    browser: Browser | None = None
    failures: list[str] = []
    try:
        env = setup(work, args.redis)
        metrics_port, flower_port = free_port(), free_port()
        login = f"operator:{secrets.token_urlsafe(12)}"
        procs.append(subprocess.Popen(
            ["celery", "-A", "workers.app", "worker", "-Q", "compaction,expiration,control", "-c", "1",
             "-n", "check@%h"], cwd=work, start_new_session=True, stdout=(work / "worker.log").open("wb"),
            stderr=subprocess.STDOUT, env={**env, "LIFECYCLE_METRICS_PORT": str(metrics_port),
                                           "LIFECYCLE_METRICS_ADDR": "127.0.0.1",
                                           "LIFECYCLE_HEARTBEAT_FILE": str(work / "heartbeat")}))
        procs.append(subprocess.Popen(
            ["celery", "-A", "workers.app", "flower", "--address=127.0.0.1", f"--port={flower_port}"], cwd=work,
            start_new_session=True, stdout=(work / "flower.log").open("wb"), stderr=subprocess.STDOUT,
            env={**env, "FLOWER_BASIC_AUTH": login}))
        flower = f"http://127.0.0.1:{flower_port}"
        wait(lambda: (work / "heartbeat").exists(), 120, "the worker")
        wait(lambda: http("GET", f"{flower}/healthcheck")[0] == 200, 60, "Flower")
        wait(lambda: "check@" in json.dumps(http("GET", f"{flower}/api/workers?refresh=1", auth=login)[1] or {}), 60,
             "Flower to see the worker")
        for job in ("compact", "expire"):
            out = subprocess.run(["lifecycle-cli", "enqueue", job, "--table", TABLE], env=env, cwd=work,
                                 capture_output=True, text=True, timeout=120)
            if out.returncode != 0:
                raise SystemExit(f"flower-check: enqueue {job} failed: {out.stderr.strip()}")

        def all_succeeded() -> Any:
            tasks = http("GET", f"{flower}/api/tasks", auth=login)[1] or {}
            names = sorted(t.get("name") or "" for t in tasks.values() if t.get("state") == "SUCCESS")
            return names if names.count("lifecycle.compact") == len(PARTS) and "lifecycle.expire" in names else None

        wait(all_succeeded, 300, "every task to succeed")

        browser = Browser(work)
        browser.cdp("Network.enable", {})
        browser.cdp("Network.setExtraHTTPHeaders",
                    {"headers": {"Authorization": "Basic " + base64.b64encode(login.encode()).decode()}})
        browser.get(f"{flower}/tasks")
        table = wait(lambda: (lambda t: t if len(t["rows"]) >= len(PARTS) + 2 else None)(browser.script(ROWS_JS)),
                     60, "the task list to fill")
        heads = [h.lower() for h in table["heads"]]
        print(f"flower-check: columns {table['heads']}")
        for row in table["rows"]:
            print("flower-check:   " + " | ".join(row[:4]))
        if not {"name", "args", "kwargs"} <= set(heads):
            failures.append(f"the task list lacks a name, args or kwargs column: {table['heads']}")
        else:
            cols = [heads.index(h) for h in ("name", "args", "kwargs")]
            shown = {tuple(r[c] for c in cols) for r in table["rows"] if len(r) > max(cols)}
            for mission, day in PARTS:
                part = f"mission_id={mission},day={day.isoformat()}"
                if ("lifecycle.compact", TABLE, f"{part} (manual)") not in shown:
                    failures.append(f"no row shows lifecycle.compact | {TABLE} | {part} (manual)")
            if ("lifecycle.expire", TABLE, "whole table (manual)") not in shown:
                failures.append(f"no row shows lifecycle.expire | {TABLE} | whole table (manual)")
            for row, clipped in zip(table["rows"], table["clipped"], strict=False):
                if any(clipped[c] for c in cols if c < len(clipped)):
                    failures.append(f"a cell is cut off on screen (a click would be needed): {row}")
        Path(args.screenshot).parent.mkdir(parents=True, exist_ok=True)
        browser.screenshot(Path(args.screenshot))
        print(f"flower-check: screenshot {args.screenshot}")

        # the login only watches: no task can be sent and no worker shut down through Flower
        workers = list((http("GET", f"{flower}/api/workers?refresh=1", auth=login)[1] or {}).keys())
        for url in (f"{flower}/api/task/async-apply/lifecycle.compact", f"{flower}/api/task/send-task/lifecycle.purge",
                    f"{flower}/api/worker/shutdown/{workers[0]}", f"{flower}/api/worker/pool/restart/{workers[0]}"):
            status, _ = http("POST", url, {"kwargs": {"table": TABLE}}, auth=login)
            print(f"flower-check: POST {url.removeprefix(flower)} -> {status}")
            if status != 403:
                failures.append(f"POST {url.removeprefix(flower)} answered {status}, not 403 (read-only)")
        if procs[0].poll() is not None:
            failures.append("the worker is gone")
    except BaseException:
        for name in ("worker.log", "flower.log"):
            path = work / name
            if path.exists():
                print(f"flower-check: --- {name} (last lines) ---\n" + path.read_text(errors="replace")[-3000:])
        raise
    finally:
        if browser is not None:
            browser.close()
        for proc in procs:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
                try:
                    proc.wait(timeout=60)
                except subprocess.TimeoutExpired:
                    os.killpg(proc.pid, signal.SIGKILL)
                    proc.wait(timeout=10)
        embedded_pg.stop(work / "data")
        shutil.rmtree(work, ignore_errors=True)
    for line in failures:
        print(f"flower-check: FAILED {line}")
    if not failures:
        print("flower-check: ok: job, table and partition in the task list; Flower's API read-only")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
