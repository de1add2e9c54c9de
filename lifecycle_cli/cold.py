"""`lifecycle-cli cold ls`: what the cold tier holds."""

from __future__ import annotations

import click

from lifecycle.clock import default_clock
from lifecycle.iceberg.catalog import open_catalog, resolve_table
from lifecycle.state.db import database_url
from lifecycle.state.store import StateStore
from lifecycle_cli.common import cli, config_option, emit_json, settings_from


@cli.group(help="The cold tier (S3 Glacier IR, or a local folder in the embedded default).")
def cold() -> None:
    pass


@cold.command("ls", help="List cold-tier objects of a table.")
@click.option("--table", "table", required=True)
@click.option("--snapshot", "snapshot_id", type=int, default=None)
@click.option("--json", "as_json", is_flag=True)
@config_option
@click.pass_context
def ls(ctx: click.Context, table: str, snapshot_id: int | None, as_json: bool, sub_config_path: str | None) -> None:
    settings = settings_from(ctx, sub_config_path)
    identifier, _ = resolve_table(open_catalog(settings), settings, table)
    store = StateStore(database_url(settings), default_clock())
    try:
        objs = store.cold_objects(identifier, snapshot_id)
    finally:
        store.close()
    if as_json:
        emit_json({"table": identifier, "count": len(objs), "objects": [
            {"source_path": o.source_path, "cold_uri": o.cold_uri, "bytes": o.bytes, "checksum": o.checksum,
             "storage_class": o.storage_class, "snapshot_ids": list(o.snapshot_ids),
             "copied_at": o.copied_at.isoformat()} for o in objs]})
        return
    for o in objs:
        click.echo(f"{o.copied_at:%Y-%m-%dT%H:%M:%SZ}  {o.bytes:>12}  {o.cold_uri}  <- {o.source_path}")
    click.echo(f"{len(objs)} object(s)")
