"""`lifecycle-cli quarantine list|release`: poison partitions the fleet skips (lifecycle/state/quarantine.py)."""

from __future__ import annotations

from typing import Any

import click

from lifecycle.clock import default_clock
from lifecycle.iceberg.catalog import open_catalog
from lifecycle.identity import worker_id
from lifecycle.jobs.admission import validate_request
from lifecycle.state.db import database_url
from lifecycle.state.quarantine import Health, Quarantine
from lifecycle.state.store import StateStore
from lifecycle_cli.common import JOB, cli, config_option, emit_json, settings_from


def as_dict(h: Health, cool_off_hours: int) -> dict[str, Any]:
    return {"job": h.job, "table": h.table_name, "partition": h.partition, "failures": h.failures,
            "last_error": h.last_error, "quarantined_at": h.quarantined_at.isoformat() if h.quarantined_at else None,
            "cool_off_hours": cool_off_hours}


@cli.group(help="Poison partitions: (job, table, partition) keys quarantined after repeated failures.")
def quarantine() -> None:
    pass


@quarantine.command("list", help="List quarantined keys (the fan-out skips them, the workers refuse them).")
@click.option("--table", "table", default=None)
@click.option("--json", "as_json", is_flag=True)
@config_option
@click.pass_context
def list_(ctx: click.Context, table: str | None, as_json: bool, sub_config_path: str | None) -> None:
    settings = settings_from(ctx, sub_config_path)
    identifier = validate_request(settings, open_catalog(settings), "compact", table, None)[0] if table else None
    store = StateStore(database_url(settings), default_clock())
    try:
        rows = Quarantine.of(store, settings).quarantined(table=identifier)
    finally:
        store.close()
    hours = settings.fleet.quarantine_cool_off_hours
    if as_json:
        emit_json({"quarantined": [as_dict(h, hours) for h in rows]})
        return
    for h in rows:
        click.echo(f"{h.job:<22} {h.table_name} {h.partition or '-'} failures={h.failures}"
                   f" since {h.quarantined_at:%Y-%m-%dT%H:%M:%SZ}  last: {(h.last_error or '')[:120]}")
    click.echo(f"{len(rows)} quarantined (each is retried once after {hours} h unless released)")


@quarantine.command("release", help="Release a quarantined key: its failure count resets and the fleet runs it again.")
@click.argument("job", type=JOB)
@click.option("--table", "table", required=True)
@click.option("--partition", "partition", default=None, help="field=value[,field=value] (compact only).")
@config_option
@click.pass_context
def release(ctx: click.Context, job: str, table: str, partition: str | None, sub_config_path: str | None) -> None:
    settings = settings_from(ctx, sub_config_path)
    identifier, part = validate_request(settings, open_catalog(settings), job, table, partition)
    store = StateStore(database_url(settings), default_clock())
    try:
        released = Quarantine.of(store, settings).release(job, identifier, part or "", by=f"cli:{worker_id()}")
    finally:
        store.close()
    where = f"{job} {identifier}" + (f" [{part}]" if part else "")
    click.echo(f"released {where}" if released else f"{where} was not quarantined")
