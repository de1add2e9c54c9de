"""The fleet for real: Redis broker (a dedicated DB, flushed), PostgreSQL state, `celery -A workers.app worker`
subprocesses with a short visibility timeout, and the shared Redis bandwidth bucket."""

from __future__ import annotations

import base64
import json
import os
import re
import signal
import subprocess
import sys
import textwrap
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

import psycopg
import pytest
import redis

from lifecycle.clock import ManualClock
from lifecycle.iceberg.catalog import open_catalog
from lifecycle.settings import Settings
from lifecycle.state.store import StateStore
from lifecycle_cli.synth import Archive, ArchiveSpec, build_archive
from tests.conftest import REPO, cli_env, free_port, make_settings, run_cli, wait_for, with_table_settings, write_config

REDIS_BASE = os.environ.get("LIFECYCLE_TEST_REDIS", "redis://127.0.0.1:6379/0").rsplit("/", 1)[0]
REDIS_URL = f"{REDIS_BASE}/13"     # dedicated to these tests; flushed by the fixture
TABLE = "archive.sda_observations"
QUEUES = "compaction,expiration,orphans,metadata,control"
PARTS = [("apollo-7", date(2024, 3, 15)), ("apollo-7", date(2024, 3, 16)), ("apollo-8", date(2024, 3, 15))]


@pytest.fixture
def redis_db() -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(REDIS_URL)
    client.flushdb()
    yield client
    client.flushdb()
    client.close()


@dataclass
class Fleet:
    settings: Settings
    archive: Archive
    config: Path
    tmp: Path
    db_url: str
    procs: list[subprocess.Popen[bytes]]

    def env(self, **extra: str) -> dict[str, str]:
        # A short visibility timeout (task limits 80 % / 90 % of it), still roomy on a busy 2-core machine.
        extra.setdefault("LIFECYCLE_VISIBILITY_TIMEOUT", "30")
        return cli_env(self.config, LIFECYCLE_RUN_HEARTBEAT_SECONDS="1", **extra)

    def start_worker(self, concurrency: int = 2, **extra_env: str) -> Worker:
        name = uuid.uuid4().hex[:8]
        port = free_port()
        heartbeat = self.tmp / f"heartbeat-{name}"
        log = (self.tmp / f"worker-{name}.log").open("wb")
        env = self.env(LIFECYCLE_METRICS_PORT=str(port), LIFECYCLE_HEARTBEAT_FILE=str(heartbeat),
                       LIFECYCLE_HEARTBEAT_SECONDS="1", PROMETHEUS_MULTIPROC_DIR=str(self.tmp / f"prom-{name}"),
                       **extra_env)
        proc = subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "workers.app", "worker", "-Q", QUEUES, "-c", str(concurrency),
             "-P", "prefork", "-n", f"w{name}@%h", "--without-gossip", "--without-mingle", "-l", "INFO"],
            cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )
        self.procs.append(proc)
        worker = Worker(proc, port, heartbeat, self.tmp / f"worker-{name}.log")
        wait_for(lambda: heartbeat.exists() or proc.poll() is not None, timeout=60, what="worker ready")
        assert proc.poll() is None, worker.log_text()
        return worker

    def runs(self, job: str = "compact") -> list[dict[str, Any]]:
        with psycopg.connect(self.db_url) as conn:
            cur = conn.execute("SELECT run_id, partition, state, attempts, worker, counts FROM job_runs"
                               " WHERE job = %s ORDER BY partition", (job,))
            cols = [d.name for d in cur.description or ()]
            return [dict(zip(cols, row, strict=True)) for row in cur.fetchall()]

    def table(self) -> Any:
        return open_catalog(self.settings).load_table(TABLE)


@dataclass
class Worker:
    proc: subprocess.Popen[bytes]
    port: int
    heartbeat: Path
    log: Path

    def log_text(self) -> str:
        return self.log.read_text(errors="replace")[-4000:]

    def metrics(self) -> str:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/metrics", timeout=10) as resp:
            return str(resp.read().decode())


def sample(text: str, name: str, **labels: str) -> float | None:
    for line in text.splitlines():
        if not line.startswith(name + "{") and line.split(" ")[0] != name:
            continue
        found = dict(re.findall(r'(\w+)="([^"]*)"', line.split(" ")[0]))
        if all(found.get(k) == v for k, v in labels.items()):
            return float(line.rsplit(" ", 1)[1])
    return None


@pytest.fixture
def make_fleet(
    tmp_path: Path, db_url: str, clock: ManualClock, redis_db: redis.Redis,
) -> Iterator[Callable[..., Fleet]]:
    procs: list[subprocess.Popen[bytes]] = []

    def make(budget: int = 1_000_000_000, files: int = 4) -> Fleet:
        fleet_cfg = {"broker_url": REDIS_URL, "redis_url": REDIS_URL}
        bandwidth = {"object_store_bytes_per_second": budget, "lifecycle_share": 1.0}
        settings = make_settings(tmp_path / "data", db_url, fleet=fleet_cfg, bandwidth=bandwidth)
        settings = with_table_settings(settings, TABLE, small_file_bytes=200_000, min_small_files=3,
                                       target_file_bytes=1_000_000)
        extra = textwrap.dedent(f"""
            [fleet]
            broker_url = "{REDIS_URL}"
            redis_url = "{REDIS_URL}"
            [bandwidth]
            object_store_bytes_per_second = {budget}
            lifecycle_share = 1.0
        """)
        config = write_config(tmp_path / "lifecycle.toml", settings, extra=extra)
        StateStore(db_url, clock).close()  # schema in place before the tests read job_runs
        archive = build_archive(open_catalog(settings), ArchiveSpec(partitions=PARTS, files_per_partition=files,
                                                                    file_bytes=(20_000, 40_000)), clock)
        return Fleet(settings, archive, config, tmp_path, db_url, procs)

    yield make
    for proc in procs:  # every task of the test has finished or been checked: stop the whole worker now
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)


def files_per_partition(table: Any) -> dict[str, int]:
    from lifecycle.iceberg.partitions import format_partition

    out: dict[str, int] = {}
    for task in table.scan().plan_files():
        f = task.file
        key = format_partition(table.specs()[f.spec_id], table.schema(), f.partition)
        out[key] = out.get(key, 0) + 1
    return out


def send(task: str, queue: str, task_id: str | None = None, **kwargs: Any) -> str:
    """Send a raw message the way beat or a redelivery would (a bare Celery client, no workers.app)."""
    from celery import Celery

    client = Celery(broker=REDIS_URL)
    try:
        return str(client.send_task(task, kwargs=kwargs, queue=queue, task_id=task_id).id)
    finally:
        client.close()


def signed(settings: Settings, job: str, **kwargs: Any) -> dict[str, Any]:
    """A manual message's fields signed with the fleet secret, as `lifecycle-cli enqueue` sends them."""
    from lifecycle.jobs.admission import sign_message
    from lifecycle.state.runs import run_id_for

    kwargs.setdefault("run_id", run_id_for(job, kwargs["table"], kwargs.get("partition") or "", uuid.uuid4().hex))
    kwargs["auth"] = sign_message(settings, job, kwargs["table"], kwargs.get("partition"),
                                  kwargs.get("manual", False), kwargs["run_id"])
    return kwargs


def queues_drained(client: redis.Redis) -> bool:
    return all(client.llen(q) == 0 for q in QUEUES.split(",")) and client.hlen("unacked") == 0


# ---- fan-out, exactly once, metrics ----------------------------------------------------------------------


def test_enqueue_compact_fans_out_per_partition_and_each_is_compacted_once(
    make_fleet: Callable[..., Fleet], redis_db: redis.Redis,
) -> None:
    fleet = make_fleet()
    # 12:00 UTC is inside the compaction pause: a manual enqueue still runs
    worker = fleet.start_worker(concurrency=2, LIFECYCLE_FAKE_NOW="2026-11-26T12:00:00+00:00")
    rows_before = fleet.table().scan().to_arrow().num_rows

    out = run_cli(["enqueue", "compact", "--table", TABLE], fleet.env())
    assert out.returncode == 0, out.stderr
    assert re.fullmatch(r"[0-9a-f-]{36}\n", out.stdout), out.stdout   # the planning task's id

    def three_done() -> bool:
        runs = fleet.runs()
        return len(runs) == 3 and all(r["state"] == "done" for r in runs)

    wait_for(three_done, timeout=90, what="three partition runs done\n" + worker.log_text())
    runs = fleet.runs()
    assert sorted(r["partition"] for r in runs) == sorted(fleet.archive.data_files)
    assert all(r["attempts"] == 1 for r in runs)
    table = fleet.table()
    assert files_per_partition(table) == dict.fromkeys(fleet.archive.data_files, 1)
    assert table.scan().to_arrow().num_rows == rows_before
    compactions = [s for s in table.metadata.snapshots if (s.summary or {}).get("lifecycle.job") == "compact"]
    assert len(compactions) == 3                                  # one commit per partition, none twice
    wait_for(lambda: queues_drained(redis_db), timeout=20, what="queues drained and nothing unacked")

    # /metrics of the worker aggregates its prefork children
    def compacted_12() -> str | None:
        text = worker.metrics()
        return text if sample(text, "files_compacted_total", table=TABLE) == 12 else None

    text = wait_for(compacted_12, timeout=20, what="files_compacted_total == 12")
    for name in ("snapshots_expired_total", "orphans_cleaned_total", "lineage_validation_failures_total"):
        assert sample(text, name, table=TABLE) is not None, name
    assert sample(text, "lifecycle_job_runs_total", job="compact", table=TABLE, outcome="done") == 3
    assert "lifecycle_job_duration_seconds_bucket" in text


def test_the_fan_out_sends_every_candidate_partition_exactly_once_across_several_pipelined_flushes(
    make_fleet: Callable[..., Fleet], redis_db: redis.Redis,
) -> None:
    fleet = make_fleet()
    # the planning task itself, in a process of its own (workers.app reads its config at import), with a
    # batch of 2 so the 3 partitions' messages go out in two flushes
    code = textwrap.dedent(f"""
        import json
        import workers.tasks as t
        from lifecycle.jobs.admission import PLAN, sign_message
        t.FANOUT_BATCH = 2
        auth = sign_message(t.context().settings, PLAN, {TABLE!r}, None, True, None)
        print(json.dumps(t._plan_compaction(None, {TABLE!r}, manual=True, auth=auth)))
    """)
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, env=fleet.env(), capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stderr[-3000:]
    ids = json.loads(out.stdout.strip().splitlines()[-1])
    messages = [json.loads(raw) for raw in redis_db.lrange("compaction", 0, -1)]
    assert sorted(m["headers"]["id"] for m in messages) == sorted(ids) and len(set(ids)) == 3
    partitions = []
    for m in messages:
        _args, kwargs, _embed = json.loads(base64.b64decode(m["body"]))
        assert kwargs["table"] == TABLE and kwargs["manual"] is True
        partitions.append(kwargs["partition"])
    assert sorted(partitions) == sorted(fleet.archive.data_files)


# ---- duplicate delivery, SIGKILL -------------------------------------------------------------------------


def test_two_deliveries_of_one_partition_task_execute_once(
    make_fleet: Callable[..., Fleet], redis_db: redis.Redis,
) -> None:
    fleet = make_fleet(budget=60_000)                              # ~3 s per partition: both overlap
    worker = fleet.start_worker(concurrency=2)
    partition = sorted(fleet.archive.data_files)[0]
    task_id = str(uuid.uuid4())
    message = signed(fleet.settings, "compact", table=TABLE, partition=partition, manual=True)
    for _ in range(2):                                             # the same message, delivered twice
        send("lifecycle.compact", "compaction", task_id=task_id, **message)
    wait_for(lambda: [r["state"] for r in fleet.runs()] == ["done"], timeout=60, what="one run done")
    wait_for(lambda: queues_drained(redis_db), timeout=30, what="both deliveries acknowledged")
    runs = fleet.runs()
    assert runs[0]["attempts"] == 1
    # one /metrics endpoint, samples from both children: the one that compacted and the one that found the lock
    text = worker.metrics()
    assert sample(text, "lifecycle_lock_contention_total", job="compact") == 1     # the other acked and exited
    assert sample(text, "files_compacted_total", table=TABLE) == 4
    assert files_per_partition(fleet.table())[partition] == 1


def test_a_worker_child_killed_mid_task_gets_its_message_back_and_nothing_is_lost(
    make_fleet: Callable[..., Fleet], redis_db: redis.Redis,
) -> None:
    fleet = make_fleet(budget=70_000)
    worker = fleet.start_worker(concurrency=2)
    partition = sorted(fleet.archive.data_files)[0]
    table = fleet.table()
    rows_before = table.scan().to_arrow().num_rows
    send("lifecycle.compact", "compaction", **signed(fleet.settings, "compact", table=TABLE, partition=partition,
                                                     manual=True))
    running = wait_for(lambda: [r for r in fleet.runs() if r["state"] == "running"], timeout=60,
                       what="the run to start\n" + worker.log_text())
    wait_for(lambda: _staged(fleet.db_url) > 0, timeout=30, what="an output staged (mid-task)")
    child = int(running[0]["worker"].rsplit(":", 1)[1])
    assert child != worker.proc.pid
    os.kill(child, signal.SIGKILL)

    wait_for(lambda: [r["state"] for r in fleet.runs()] == ["done"], timeout=90,
             what="the redelivered run to finish\n" + worker.log_text())
    run = fleet.runs()[0]
    assert run["attempts"] == 2
    table = fleet.table()
    assert table.scan().to_arrow().num_rows == rows_before
    assert files_per_partition(table)[partition] == 1
    for task in table.scan().plan_files():                           # every referenced file exists
        assert Path(task.file.file_path.removeprefix("file://")).exists()
    with psycopg.connect(fleet.db_url) as conn:
        open_stage = conn.execute("SELECT count(*) FROM journal WHERE kind = 'stage'"
                                  " AND state NOT IN ('committed', 'removed')").fetchone()
    assert open_stage == (0,)
    wait_for(lambda: queues_drained(redis_db), timeout=30, what="the message acknowledged")


def test_a_whole_worker_killed_mid_task_is_redelivered_after_the_visibility_timeout(
    make_fleet: Callable[..., Fleet], redis_db: redis.Redis,
) -> None:
    fleet = make_fleet(budget=70_000)
    first = fleet.start_worker(concurrency=1, LIFECYCLE_VISIBILITY_TIMEOUT="20")
    partition = sorted(fleet.archive.data_files)[1]
    rows_before = fleet.table().scan().to_arrow().num_rows
    send("lifecycle.compact", "compaction", **signed(fleet.settings, "compact", table=TABLE, partition=partition,
                                                     manual=True))
    wait_for(lambda: _staged(fleet.db_url) > 0, timeout=60, what="an output staged\n" + first.log_text())
    os.killpg(first.proc.pid, signal.SIGKILL)                        # the node dies: no reject, no ack
    first.proc.wait(timeout=10)
    assert redis_db.hlen("unacked") == 1
    second = fleet.start_worker(concurrency=1, LIFECYCLE_VISIBILITY_TIMEOUT="20")
    wait_for(lambda: [r["state"] for r in fleet.runs()] == ["done"], timeout=60,
             what="redelivery after the visibility timeout\n" + second.log_text())
    assert fleet.runs()[0]["attempts"] == 2
    table = fleet.table()
    assert table.scan().to_arrow().num_rows == rows_before
    assert files_per_partition(table)[partition] == 1
    wait_for(lambda: queues_drained(redis_db), timeout=30, what="the message acknowledged")


def _staged(db_url: str) -> int:
    with psycopg.connect(db_url) as conn:
        row = conn.execute("SELECT count(*) FROM journal WHERE kind = 'stage'").fetchone()
    return int(row[0]) if row else 0


# ---- the shared bandwidth budget -------------------------------------------------------------------------

_HAMMER = """
import json, sys, time, redis
from lifecycle.fleet.bandwidth_redis import RedisTokenBucket
url, key, rate, burst, chunk, seconds = sys.argv[1], sys.argv[2], float(sys.argv[3]), float(sys.argv[4]), \
    int(sys.argv[5]), float(sys.argv[6])
client = redis.Redis.from_url(url)
bucket = RedisTokenBucket(client, rate, burst, key=key)
client.incr(key + ":ready")
while int(client.get(key + ":ready")) < 4:   # start together: imports take a while on a busy machine
    time.sleep(0.001)
until = time.time() + seconds
grants = []
while time.time() < until:
    bucket.acquire(chunk)
    grants.append(time.time())
print(json.dumps(grants))
"""


def test_four_processes_share_the_budget_within_five_percent_and_never_exceed_one_burst(
    redis_db: redis.Redis,
) -> None:
    rate, burst, chunk, seconds = 2_000_000.0, 200_000.0, 16_384, 21.0
    key = f"bw-{uuid.uuid4().hex[:6]}"
    procs = [subprocess.Popen([sys.executable, "-c", _HAMMER, REDIS_URL, key, str(rate), str(burst), str(chunk),
                               str(seconds)], cwd=REPO, stdout=subprocess.PIPE, text=True) for _ in range(4)]
    grants = sorted(t for p in procs for t in json.loads(p.communicate(timeout=60)[0]))
    assert all(p.returncode == 0 for p in procs)
    first, last = grants[0], grants[-1]
    assert last - first >= 20.0
    # Achieved rate, leaving out the initial burst: within ±5 % of the budget.
    achieved = (len(grants) * chunk - burst) / (last - first)
    assert abs(achieved - rate) / rate < 0.05, achieved
    # Over any interval, never more than rate × interval + one burst (+ the chunk that opens the interval).
    worst = 0.0
    low = float("inf")
    for i, t in enumerate(grants):
        low = min(low, i * chunk - rate * t)                        # bytes granted before grant i
        worst = max(worst, (i + 1) * chunk - rate * t - low)
    print(f"bandwidth: {len(grants)} grants over {last - first:.2f}s, achieved {achieved:.0f} B/s of {rate:.0f},"
          f" worst excess over rate x interval {worst:.0f} B (burst {burst:.0f}, chunk {chunk})")
    # Timer slack: a process the OS wakes 50 ms late bunches its bytes with the next ones.
    assert worst <= burst + chunk + rate * 0.05, worst


# ---- enqueue, status, reaper, attempts (in-process or CLI; no worker) -------------------------------------


def test_enqueue_prints_ids_status_shows_queue_depths_and_bad_input_sends_nothing(
    make_fleet: Callable[..., Fleet], redis_db: redis.Redis,
) -> None:
    fleet = make_fleet(files=3)
    env = fleet.env()
    partition = sorted(fleet.archive.data_files)[0]
    out = run_cli(["enqueue", "compact", "--table", "sda_observations", "--partition", partition, "--json"], env)
    assert out.returncode == 0, out.stderr
    sent = json.loads(out.stdout)["tasks"]
    assert [(t["job"], t["table"], t["partition"]) for t in sent] == [("compact", TABLE, partition)]
    send("lifecycle.expire", "expiration", **signed(fleet.settings, "expire", table=TABLE, manual=True))
    status = run_cli(["status", "--json"], env)
    assert status.returncode == 0, status.stderr
    assert json.loads(status.stdout)["queues"] == {"compaction": 1, "expiration": 1, "orphans": 0, "metadata": 0,
                                                  "control": 0}
    bad = run_cli(["enqueue", "compact", "--table", "archive.nope"], env)   # (the CLI's other checks are shared)
    assert bad.returncode == 2, (bad.stdout, bad.stderr)
    assert len(bad.stderr.strip().splitlines()) == 1 and "unknown table" in bad.stderr, bad.stderr
    assert redis_db.llen("compaction") == 1 and redis_db.llen("expiration") == 1   # nothing more was sent


def test_reaper_requeues_stale_runs_nobody_holds_and_fails_exhausted_ones(ctx: Any, clock: ManualClock) -> None:
    from datetime import timedelta

    from prometheus_client import REGISTRY

    from lifecycle.fleet.reaper import reap
    from lifecycle.state.locks import AdvisoryLock
    from lifecycle.state.runs import RunStore

    runs = RunStore(ctx.store)
    for run_id, partition in (("dead", "p=1"), ("busy", "p=2"), ("exhausted", "p=3")):
        runs.ensure(run_id, "compact", TABLE, partition, manual=False, max_attempts=3)
        for _ in range(3 if run_id == "exhausted" else 1):
            runs.start(run_id, "lifecycle@gone:1")
    clock.advance(timedelta(minutes=10))
    before = REGISTRY.get_sample_value("lifecycle_job_attempts_exhausted_total", {"job": "compact"}) or 0.0
    sent: list[tuple[str, str]] = []
    with AdvisoryLock(ctx.db_url, "compact", TABLE, "p=2") as held:
        assert held.acquired
        report = reap(ctx.store, ctx.db_url, lambda r: sent.append((r.run_id, r.partition)) or "task-id",
                      stale=timedelta(minutes=5))
    assert (report.requeued, report.busy, report.failed) == (["dead"], ["busy"], ["exhausted"])
    assert sent == [("dead", "p=1")]
    exhausted = runs.get("exhausted")
    assert exhausted is not None and exhausted.state == "failed" and "3 attempts" in (exhausted.error or "")
    assert REGISTRY.get_sample_value("lifecycle_job_attempts_exhausted_total", {"job": "compact"}) == before + 1
    # re-enqueueing refreshed the heartbeat: the next sweep waits a full period again
    assert reap(ctx.store, ctx.db_url, lambda r: "x", stale=timedelta(minutes=5)).requeued == ["busy"]


def test_a_run_that_keeps_dying_ends_failed_and_a_scheduled_one_outside_its_window_does_nothing(
    ctx: Any, clock: ManualClock,
) -> None:
    import dataclasses
    from datetime import UTC, datetime

    from lifecycle.fleet.execution import ALREADY_FINISHED, ATTEMPTS_EXHAUSTED, run_fleet_job
    from lifecycle.jobs.base import NOTHING_TO_DO, JobRequest
    from lifecycle.state.runs import RunStore

    runs = RunStore(ctx.store)
    runs.ensure("crashy", "compact", TABLE, "p=1", manual=True, max_attempts=2)
    for _ in range(2):
        runs.start("crashy", "lifecycle@gone:1")                       # two attempts that died
    req = JobRequest("compact", TABLE, "p=1", manual=True, run_id="crashy")
    assert run_fleet_job(ctx, req).status == ATTEMPTS_EXHAUSTED
    assert run_fleet_job(ctx, req).status == ALREADY_FINISHED         # a later redelivery: acked, nothing done
    run = runs.get("crashy")
    assert run is not None and (run.state, run.attempts) == ("failed", 2)

    clock.set(datetime(2026, 11, 26, 12, 0, tzinfo=UTC))
    for job in ("compact", "expire", "purge"):
        scheduled = JobRequest(job, TABLE, None, manual=False, run_id=f"sched-{job}")
        result = run_fleet_job(dataclasses.replace(ctx, manual=False), scheduled)
        assert result.status == NOTHING_TO_DO and "outside its window at 12:00" in result.detail[0]
        assert runs.get(f"sched-{job}") is None


def test_worker_children_run_jobs_at_lower_cpu_priority_and_the_main_process_does_not(
    make_fleet: Callable[..., Fleet],
) -> None:
    fleet = make_fleet()
    worker = fleet.start_worker(concurrency=2)
    main_pid = worker.proc.pid

    def niced_children() -> list[int] | None:   # each child lowers itself as it initialises
        kids = [int(k) for k in Path(f"/proc/{main_pid}/task/{main_pid}/children").read_text().split()]
        return kids if len(kids) >= 2 and all(os.getpriority(os.PRIO_PROCESS, k) == 10 for k in kids) else None

    wait_for(niced_children, timeout=30, what="two pool children at nice 10\n" + worker.log_text())
    assert os.getpriority(os.PRIO_PROCESS, main_pid) == 0
