"""The state store: plans, journal entries, job runs and the cold-tier catalog in PostgreSQL.

Every state change is a compare-and-swap (`UPDATE ... WHERE state = expected`) whose row count is checked.
Every timestamp comes from the injectable clock.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime
from typing import Any

import psycopg
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb

from lifecycle.clock import Clock
from lifecycle.errors import StaleStateError
from lifecycle.state import migrations
from lifecycle.state.db import connect
from lifecycle.state.models import (
    FINISHED_ENTRY_STATES,
    OPEN_PLAN_STATES,
    PURGE,
    PURGE_QUEUED_STATES,
    ColdObject,
    EntryState,
    JournalEntry,
    NewEntry,
    Plan,
    PlanState,
)

_PLAN_COLS = ("plan_id, job, table_name, partition, state, base_snapshot_id, run_id, payload, progress,"
              " created_at, updated_at")
_ENTRY_COLS = "entry_id, plan_id, table_name, kind, path, state, bytes, eligible_at, info"


class StateStore:
    """One autocommit connection, serialized by a lock; safe to share between threads of a process."""

    def __init__(self, url: str, clock: Clock, upgrade: bool = True) -> None:
        self.url = url
        self.clock = clock
        self._conn = connect(url)
        self._lock = threading.RLock()
        if upgrade:
            migrations.upgrade(self._conn)

    def close(self) -> None:
        self._conn.close()

    @contextmanager
    def cursor(self) -> Iterator[psycopg.Cursor[dict[str, Any]]]:
        with self._lock, self._conn.cursor(row_factory=dict_row) as cur:
            yield cur

    @contextmanager
    def transaction(self) -> Iterator[psycopg.Cursor[dict[str, Any]]]:
        with self._lock, self._conn.transaction(), self._conn.cursor(row_factory=dict_row) as cur:
            yield cur

    # ---- plans -------------------------------------------------------------------------------------

    def create_plan(
        self,
        job: str,
        table_name: str,
        partition: str,
        payload: dict[str, Any],
        base_snapshot_id: int | None,
        run_id: str | None = None,
        entries: dict[str, Sequence[NewEntry]] | None = None,
        plan_id: str | None = None,
    ) -> Plan:
        """Write the plan row and its journal rows in one transaction, before any side effect."""
        now = self.clock.now()
        plan_id = plan_id or str(uuid.uuid4())
        with self.transaction() as cur:
            cur.execute(
                f"INSERT INTO plans ({_PLAN_COLS}) VALUES (%s,%s,%s,%s,'planned',%s,%s,%s,'{{}}',%s,%s)"
                f" RETURNING {_PLAN_COLS}",
                (plan_id, job, table_name, partition, base_snapshot_id, run_id, Jsonb(payload), now, now),
            )
            row = cur.fetchone()
            for kind, rows in (entries or {}).items():
                self._insert_entries(cur, plan_id, table_name, kind, rows, now)
        assert row is not None
        return _plan(row)

    def plan(self, plan_id: str) -> Plan | None:
        with self.cursor() as cur:
            cur.execute(f"SELECT {_PLAN_COLS} FROM plans WHERE plan_id = %s", (plan_id,))
            row = cur.fetchone()
        return _plan(row) if row else None

    def open_plans(self, job: str, table_name: str | None = None, partition: str | None = None) -> list[Plan]:
        """One job's unfinished plans (of a table, of a partition), oldest first."""
        return self._open_plans(job, table_name, partition)

    def all_open_plans(self, table_name: str | None = None) -> list[Plan]:
        """Every job's unfinished plans (of a table), oldest first."""
        return self._open_plans(None, table_name, None)

    def _open_plans(self, job: str | None, table_name: str | None, partition: str | None) -> list[Plan]:
        where: list[str] = ["state = ANY(%s)"]
        args: list[Any] = [list(OPEN_PLAN_STATES)]
        for column, value in (("job", job), ("table_name", table_name), ("partition", partition)):
            if value is not None:
                where.append(f"{column} = %s")
                args.append(value)
        with self.cursor() as cur:
            cur.execute(f"SELECT {_PLAN_COLS} FROM plans WHERE {' AND '.join(where)} ORDER BY created_at, plan_id",
                        args)
            return [_plan(r) for r in cur.fetchall()]

    def plans_in_states(self, job: str, table_name: str, states: Sequence[str], limit: int | None = None) -> list[Plan]:
        """A table's plans of one job in the given states, oldest first."""
        sql = (f"SELECT {_PLAN_COLS} FROM plans WHERE job = %s AND table_name = %s AND state = ANY(%s)"
               " ORDER BY created_at, plan_id")
        if limit is not None:
            sql += f" LIMIT {int(limit)}"
        with self.cursor() as cur:
            cur.execute(sql, (job, table_name, list(states)))
            return [_plan(r) for r in cur.fetchall()]

    def closed_plans_with_open_entries(self, job: str, table_name: str, closed: Sequence[str],
                                       kinds: Sequence[str], open_states: Sequence[str]) -> list[str]:
        """Ids of plans already closed (e.g. abandoned) that still own open journal entries of these kinds:
        a run that died between closing the plan and clearing its entries."""
        with self.cursor() as cur:
            cur.execute(
                "SELECT DISTINCT p.plan_id FROM plans p JOIN journal j ON j.plan_id = p.plan_id"
                " WHERE p.job = %s AND p.table_name = %s AND p.state = ANY(%s) AND j.kind = ANY(%s)"
                " AND j.state = ANY(%s) ORDER BY p.plan_id",
                (job, table_name, list(closed), list(kinds), list(open_states)),
            )
            return [r["plan_id"] for r in cur.fetchall()]

    def _new_state(self, new: str, column: str, merge: dict[str, Any] | None) -> tuple[str, list[Any]]:
        """The SET clause of a checked state change: the state, its time, and `merge` merged into `column`."""
        sets, args = "state = %s, updated_at = %s", [new, self.clock.now()]
        if merge is not None:
            sets += f", {column} = {column} || %s"
            args.append(Jsonb(merge))
        return sets, args

    def transition_plan(
        self, plan_id: str, expected: str | Sequence[str], new: str, progress: dict[str, Any] | None = None
    ) -> Plan:
        """Move a plan from an expected state to a new one; StaleStateError when it is elsewhere."""
        allowed = [expected] if isinstance(expected, str) else list(expected)
        sets, args = self._new_state(new, "progress", progress)
        with self.cursor() as cur:
            cur.execute(
                f"UPDATE plans SET {sets} WHERE plan_id = %s AND state = ANY(%s) RETURNING {_PLAN_COLS}",
                [*args, plan_id, allowed],
            )
            row = cur.fetchone()
        if row is None:
            current = self.plan(plan_id)
            raise StaleStateError(
                f"plan {plan_id}: expected state {'/'.join(allowed)}, found "
                f"{current.state if current else 'no such plan'}"
            )
        return _plan(row)

    def record_progress(self, plan_id: str, expected: str, progress: dict[str, Any]) -> Plan:
        return self.transition_plan(plan_id, expected, expected, progress)

    # ---- journal -----------------------------------------------------------------------------------

    def _insert_entries(
        self, cur: psycopg.Cursor[Any], plan_id: str, table: str, kind: str, rows: Iterable[NewEntry],
        now: datetime, state: str = "pending",
    ) -> None:
        cur.executemany(
            "INSERT INTO journal (plan_id, table_name, kind, path, state, bytes, eligible_at, info,"
            " created_at, updated_at) VALUES (%s,%s,%s,%s,%s,%s,%s,%s,%s,%s)"
            " ON CONFLICT (plan_id, kind, path) DO NOTHING",
            [(plan_id, table, kind, r.path, state, r.bytes, r.eligible_at, Jsonb(r.info), now, now) for r in rows],
        )

    def add_entries(
        self, plan_id: str, table_name: str, kind: str, rows: Sequence[NewEntry], state: str = "pending"
    ) -> None:
        with self.transaction() as cur:
            self._insert_entries(cur, plan_id, table_name, kind, rows, self.clock.now(), state)

    def entries(
        self, plan_id: str | None = None, kind: str | None = None, states: Sequence[str] | None = None,
        table_name: str | None = None, eligible_before: datetime | None = None, limit: int | None = None,
        after_entry_id: int | None = None,
    ) -> list[JournalEntry]:
        """Journal rows by plan, kind, states, table and eligibility, in entry order; `after_entry_id` and
        `limit` page through a large backlog without holding it in memory."""
        sql = f"SELECT {_ENTRY_COLS} FROM journal WHERE true"
        args: list[Any] = []
        if after_entry_id is not None:
            sql += " AND entry_id > %s"
            args.append(after_entry_id)
        for col, val in (("plan_id", plan_id), ("kind", kind), ("table_name", table_name)):
            if val is not None:
                sql += f" AND {col} = %s"
                args.append(val)
        if states is not None:
            sql += " AND state = ANY(%s)"
            args.append(list(states))
        if eligible_before is not None:
            sql += " AND eligible_at <= %s"
            args.append(eligible_before)
        sql += " ORDER BY entry_id"
        if limit is not None:
            sql += f" LIMIT {int(limit)}"
        with self.cursor() as cur:
            cur.execute(sql, args)
            return [_entry(r) for r in cur.fetchall()]

    def make_eligible(self, entry_ids: Sequence[int], eligible_at: datetime) -> None:
        """Give inert journal rows their eligibility time (rows already eligible keep theirs)."""
        if not entry_ids:
            return
        with self.cursor() as cur:
            cur.execute("UPDATE journal SET eligible_at = %s, updated_at = %s WHERE entry_id = ANY(%s)"
                        " AND eligible_at IS NULL", (eligible_at, self.clock.now(), list(entry_ids)))

    def count_entries(self, kind: str, table_name: str, states: Sequence[str],
                      eligible_before: datetime | None = None) -> int:
        sql = "SELECT count(*) AS n FROM journal WHERE kind = %s AND table_name = %s AND state = ANY(%s)"
        args: list[Any] = [kind, table_name, list(states)]
        if eligible_before is not None:
            sql += " AND eligible_at <= %s"
            args.append(eligible_before)
        with self.cursor() as cur:
            cur.execute(sql, args)
            row = cur.fetchone()
        return int(row["n"]) if row else 0

    def transition_entries(
        self, entry_ids: Sequence[int], expected: str | Sequence[str], new: str,
        info: dict[str, Any] | None = None,
    ) -> int:
        """CAS a batch of journal entries; StaleStateError unless every one was in an expected state."""
        if not entry_ids:
            return 0
        allowed = [expected] if isinstance(expected, str) else list(expected)
        sets, args = self._new_state(new, "info", info)
        with self.transaction() as cur:
            cur.execute(
                f"UPDATE journal SET {sets} WHERE entry_id = ANY(%s) AND state = ANY(%s)",
                [*args, list(entry_ids), allowed],
            )
            if cur.rowcount != len(set(entry_ids)):
                raise StaleStateError(
                    f"journal: {len(set(entry_ids)) - cur.rowcount} of {len(set(entry_ids))} entries "
                    f"were not in state {'/'.join(allowed)}"
                )
            return cur.rowcount

    def guarded_paths(self, table_name: str, kinds: Sequence[str], states: Sequence[str]) -> set[str]:
        """Paths journaled under open plans of given kinds and states (the orphan scan's guard)."""
        with self.cursor() as cur:
            cur.execute(
                "SELECT j.path FROM journal j WHERE j.table_name = %s AND j.kind = ANY(%s)"
                " AND j.state = ANY(%s)",
                (table_name, list(kinds), list(states)),
            )
            return {r["path"] for r in cur.fetchall()}

    # ---- cold-tier catalog -------------------------------------------------------------------------

    def record_cold(self, obj: ColdObject) -> None:
        with self.cursor() as cur:
            cur.execute(
                "INSERT INTO cold_objects (table_name, snapshot_ids, source_path, cold_uri, bytes, checksum,"
                " storage_class, copied_at, plan_id) VALUES (%s,%s,%s,%s,%s,%s,%s,%s,%s)"
                " ON CONFLICT (table_name, source_path) DO UPDATE SET cold_uri = EXCLUDED.cold_uri,"
                " bytes = EXCLUDED.bytes, checksum = EXCLUDED.checksum, copied_at = EXCLUDED.copied_at,"
                " storage_class = EXCLUDED.storage_class,"
                " snapshot_ids = (SELECT array_agg(DISTINCT s) FROM unnest(cold_objects.snapshot_ids"
                " || EXCLUDED.snapshot_ids) AS s)",
                (obj.table_name, list(obj.snapshot_ids), obj.source_path, obj.cold_uri, obj.bytes,
                 obj.checksum, obj.storage_class, obj.copied_at, obj.plan_id),
            )

    def oldest_eligible_purge(self, now: datetime) -> dict[str, datetime | None]:
        """Per table with purge rows: when the oldest row still owed (pending or copied) became eligible,
        if it is eligible by `now`; None when nothing is overdue."""
        with self.cursor() as cur:
            cur.execute(
                "SELECT table_name, min(eligible_at) FILTER (WHERE state = ANY(%s) AND eligible_at <= %s) AS oldest"
                " FROM journal WHERE kind = %s GROUP BY table_name", (list(PURGE_QUEUED_STATES), now, PURGE))
            return {r["table_name"]: r["oldest"] for r in cur.fetchall()}

    def journal_backlog(self, table_name: str | None = None) -> list[dict[str, Any]]:
        """Open journal rows grouped by table, kind and state: files, bytes and the next eligibility."""
        with self.cursor() as cur:
            cur.execute(
                "SELECT table_name, kind, state, count(*) AS files, coalesce(sum(bytes), 0) AS bytes,"
                " min(eligible_at) AS next_eligible FROM journal WHERE NOT state = ANY(%s)"
                + (" AND table_name = %s" if table_name else "") + " GROUP BY 1, 2, 3 ORDER BY 1, 2, 3",
                (list(FINISHED_ENTRY_STATES), table_name) if table_name else (list(FINISHED_ENTRY_STATES),))
            return list(cur.fetchall())

    def cold_object_count(self) -> int:
        with self.cursor() as cur:
            cur.execute("SELECT count(*) AS n FROM cold_objects")
            row = cur.fetchone()
        return int(row["n"]) if row else 0

    def recorded_cold(self, table_name: str, paths: Sequence[str]) -> set[str]:
        """Which of these source paths already have a cold copy recorded."""
        with self.cursor() as cur:
            cur.execute("SELECT source_path FROM cold_objects WHERE table_name = %s AND source_path = ANY(%s)",
                        (table_name, list(paths)))
            return {r["source_path"] for r in cur.fetchall()}

    def cold_objects(self, table_name: str, snapshot_id: int | None = None) -> list[ColdObject]:
        sql = ("SELECT table_name, snapshot_ids, source_path, cold_uri, bytes, checksum, storage_class,"
               " copied_at, plan_id FROM cold_objects WHERE table_name = %s")
        args: list[Any] = [table_name]
        if snapshot_id is not None:
            sql += " AND %s = ANY(snapshot_ids)"
            args.append(snapshot_id)
        with self.cursor() as cur:
            cur.execute(sql + " ORDER BY source_path", args)
            return [
                ColdObject(r["table_name"], tuple(r["snapshot_ids"]), r["source_path"], r["cold_uri"],
                           r["bytes"], r["checksum"], r["storage_class"], r["copied_at"], r["plan_id"])
                for r in cur.fetchall()
            ]


def _plan(row: dict[str, Any]) -> Plan:
    return Plan(**{**row, "state": PlanState(row["state"])})


def _entry(row: dict[str, Any]) -> JournalEntry:
    return JournalEntry(**{**row, "state": EntryState(row["state"])})
