"""`lifecycle-cli status`: plans in flight, journal backlog, held locks, recent runs, writers."""

from __future__ import annotations

import sys
from typing import Any

import click

from lifecycle.clock import default_clock
from lifecycle.iceberg.catalog import open_catalog, resolve_table
from lifecycle.log import mask
from lifecycle.settings import Settings
from lifecycle.state.db import database_url
from lifecycle.state.locks import held_locks
from lifecycle.state.runs import RunStore
from lifecycle.state.store import StateStore
from lifecycle.state.writers import all_writers
from lifecycle_cli.common import cli, config_option, emit_json, settings_from


def collect(store: StateStore, table: str | None, ttl_seconds: int) -> dict[str, Any]:
    now = store.clock.now()
    backlog = store.journal_backlog(table)
    plans = store.all_open_plans(table)
    with store.cursor() as cur:
        locks = held_locks(cur.connection)
        writers = all_writers(cur.connection)
    runs = RunStore(store).recent(table, limit=10)
    return {
        "table": table,
        "plans_in_flight": [
            {"plan_id": p.plan_id, "job": p.job, "table": p.table_name, "partition": p.partition,
             "state": p.state, "updated_at": p.updated_at.isoformat()} for p in plans],
        "journal_backlog": [{**r, "next_eligible": r["next_eligible"].isoformat() if r["next_eligible"] else None}
                            for r in backlog],
        "locks": locks,
        "recent_runs": [
            {"run_id": r.run_id, "job": r.job, "table": r.table_name, "partition": r.partition,
             "state": r.state, "attempts": r.attempts, "error": r.error,
             "finished_at": r.finished_at.isoformat() if r.finished_at else None} for r in runs],
        "writers": [
            {"writer_id": w.writer_id, "host": w.host,
             "last_heartbeat_at": w.last_heartbeat_at.isoformat() if w.last_heartbeat_at else None,
             "active": bool(w.last_heartbeat_at and (now - w.last_heartbeat_at).total_seconds() < ttl_seconds),
             "in_progress_paths": list(w.in_progress_paths)} for w in writers],
    }


def _first_line(exc: BaseException) -> str:
    text = mask(str(exc)).strip()
    return f"{type(exc).__name__}: {text.splitlines()[0]}" if text else type(exc).__name__


def gather(settings: Settings, identifier: str | None) -> dict[str, Any]:
    """Each component on its own: what cannot be reached is named under `unreachable`, the rest is shown."""
    data: dict[str, Any] = {"table": identifier}
    unreachable: dict[str, str] = {}
    ttl = settings.for_table(identifier).writer_heartbeat_ttl_seconds if identifier else \
        settings.defaults.writer_heartbeat_ttl_seconds
    try:
        store = StateStore(database_url(settings), default_clock())
    except Exception as exc:  # the state database is down: the broker may still answer
        unreachable["state database"] = _first_line(exc)
    else:
        try:
            data.update(collect(store, identifier, ttl))
            _add_quarantine(data, store, settings, identifier)
        except Exception as exc:
            unreachable["state database"] = _first_line(exc)
        finally:
            store.close()
    try:
        from lifecycle.fleet.queues import queue_depths
    except ImportError:
        pass
    else:
        try:
            data["queues"] = queue_depths(settings)
        except Exception as exc:  # Redis down: the state database's view is still worth showing
            where = mask(settings.fleet.broker_url) or "embedded broker"
            unreachable["broker"] = f"{where}: {_first_line(exc)}"
    data["unreachable"] = unreachable
    return data


@cli.command(help="Show plans in flight, journals, locks, last runs, writers and queues. A component that "
                  "cannot be reached is named and the rest still shown (exit 1).")
@click.option("--table", "table", default=None)
@click.option("--json", "as_json", is_flag=True)
@config_option
@click.pass_context
def status(ctx: click.Context, table: str | None, as_json: bool, sub_config_path: str | None) -> None:
    settings = settings_from(ctx, sub_config_path)
    identifier = None
    if table is not None:
        identifier, _ = resolve_table(open_catalog(settings), settings, table)
    data = gather(settings, identifier)
    if as_json:
        emit_json(data)
    else:
        _print(settings, data)
    if data["unreachable"]:
        sys.exit(1)


def _print(settings: Settings, data: dict[str, Any]) -> None:
    click.echo(f"config: {settings.source}")
    if "plans_in_flight" in data:
        click.echo(f"plans in flight: {len(data['plans_in_flight'])}")
        for p in data["plans_in_flight"]:
            click.echo(f"  {p['job']:<22} {p['table']} {p['partition']} {p['state']} ({p['plan_id']})")
        click.echo(f"journal backlog: {sum(r['files'] for r in data['journal_backlog'])} file(s)")
        for r in data["journal_backlog"]:
            click.echo(f"  {r['table_name']} {r['kind']}/{r['state']}: {r['files']} file(s), {r['bytes']} bytes")
        click.echo(f"held locks: {len(data['locks'])}")
        for lk in data["locks"]:
            click.echo(f"  {lk['holder']} key={lk['key']} since {lk['since']}")
        click.echo("recent runs:")
        for r in data["recent_runs"]:
            click.echo(f"  {r['job']:<22} {r['table']} {r['partition']} {r['state']} attempts={r['attempts']}")
        click.echo(f"writers: {len(data['writers'])}")
        for w in data["writers"]:
            click.echo(f"  {w['writer_id']} {'active' if w['active'] else 'stale'} last={w['last_heartbeat_at']}")
    if "queues" in data:
        click.echo("queues: " + ", ".join(f"{q}={n}" for q, n in data["queues"].items()))
    for component, error in data["unreachable"].items():
        click.echo(f"{component}: unreachable ({error})")
    _echo_quarantine(data)


# ---- quarantined poison partitions (lifecycle/state/quarantine.py) ---------------------------------------


def _add_quarantine(data: dict[str, Any], store: StateStore, settings: Settings, table: str | None) -> None:
    from lifecycle.state.quarantine import Quarantine
    from lifecycle_cli.quarantine import as_dict

    rows = Quarantine.of(store, settings).quarantined(table=table)
    data["quarantined"] = [as_dict(h, settings.fleet.quarantine_cool_off_hours) for h in rows]


def _echo_quarantine(data: dict[str, Any]) -> None:
    if "quarantined" not in data:
        return
    click.echo(f"quarantined: {len(data['quarantined'])}" + (" (lifecycle-cli quarantine list | release)"
                                                           if data["quarantined"] else ""))
    for q in data["quarantined"]:
        click.echo(f"  {q['job']:<22} {q['table']} {q['partition'] or '-'} failures={q['failures']}"
                   f" since {q['quarantined_at']}")
