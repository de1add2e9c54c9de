"""The reaper's pruning of old state rows, on real PostgreSQL: what is old and finished goes; a purge row not yet
deleted or skipped, anything of an open plan, and anything recent stays."""

from __future__ import annotations

import dataclasses
from datetime import timedelta
from typing import Any

from lifecycle.clock import ManualClock
from lifecycle.state.models import NewEntry
from lifecycle.state.prune import prune
from lifecycle.state.runs import RunStore

TABLE = "archive.sda_observations"


def _plan(store: Any, job: str, states: dict[str, list[str]], final: str | None) -> str:
    plan = store.create_plan(job, TABLE, "", {}, None)
    for kind, entry_states in states.items():
        rows = [NewEntry(f"s3://b/{plan.plan_id}/{kind}/{i}") for i in range(len(entry_states))]
        store.add_entries(plan.plan_id, TABLE, kind, rows)
        entries = store.entries(plan_id=plan.plan_id, kind=kind)
        for entry, state in zip(entries, entry_states, strict=True):
            if state != "pending":
                store.transition_entries([entry.entry_id], "pending", state)
    if final:
        store.transition_plan(plan.plan_id, "planned", final)
    return str(plan.plan_id)


def _count(store: Any, sql: str) -> int:
    with store.cursor() as cur:
        cur.execute(sql)
        row = cur.fetchone()
    return int(next(iter(row.values())))


def test_old_finished_rows_are_pruned_and_owed_purges_open_plans_and_recent_rows_stay(
    ctx: Any, clock: ManualClock,
) -> None:
    store, runs = ctx.store, RunStore(ctx.store)
    settings = dataclasses.replace(ctx.settings, state=dataclasses.replace(ctx.settings.state,
                                                                           history_retention_days=30))
    done_compaction = _plan(store, "compact", {"stage": ["committed", "removed", "committed"]}, "done")
    expired = _plan(store, "expire", {"purge": ["deleted", "skipped", "pending", "copied"]}, "done")
    still_open = _plan(store, "compact", {"stage": ["written", "committed"]}, None)
    runs.ensure("old-run", "compact", TABLE, "p=1", manual=False)
    runs.start("old-run", "w")
    runs.finish("old-run", "done")
    runs.ensure("open-run", "compact", TABLE, "p=2", manual=False)
    runs.start("open-run", "w")
    clock.advance(timedelta(days=31))
    recent = _plan(store, "compact", {"stage": ["committed"]}, "done")
    runs.ensure("new-run", "compact", TABLE, "p=3", manual=False)
    runs.start("new-run", "w")
    runs.finish("new-run", "done")

    counted = prune(store, settings, batch=2)            # small batches: several per kind
    assert counted == {"journal": 5, "plans": 1, "job_runs": 1, "partition_health": 0}
    plans = {r["plan_id"] for r in _rows(store, "SELECT plan_id FROM plans")}
    assert plans == {expired, still_open, recent}        # the expire plan still owes two purges
    assert sorted(r["state"] for r in _rows(store, f"SELECT state FROM journal WHERE plan_id = '{expired}'")) == [
        "copied", "pending"]
    assert _count(store, f"SELECT count(*) FROM journal WHERE plan_id = '{still_open}'") == 2
    assert _count(store, f"SELECT count(*) FROM journal WHERE plan_id = '{recent}'") == 1
    assert done_compaction not in plans
    assert {r["run_id"] for r in _rows(store, "SELECT run_id FROM job_runs")} == {"open-run", "new-run"}
    assert prune(store, settings) == {"journal": 0, "plans": 0, "job_runs": 0, "partition_health": 0}


def _rows(store: Any, sql: str) -> list[dict[str, Any]]:
    with store.cursor() as cur:
        cur.execute(sql)
        return list(cur.fetchall())
