"""`lifecycle-cli db upgrade`."""

from __future__ import annotations

import click

from lifecycle.state import migrations
from lifecycle.state.db import connect, database_url
from lifecycle_cli.common import cli, config_option, settings_from


@cli.group(help="State database maintenance.")
def db() -> None:
    pass


@db.command(help="Apply pending migrations (idempotent).")
@config_option
@click.pass_context
def upgrade(ctx: click.Context, sub_config_path: str | None) -> None:
    settings = settings_from(ctx, sub_config_path)
    with connect(database_url(settings)) as conn:
        applied = migrations.upgrade(conn)
    click.echo(f"applied {', '.join(applied)}" if applied else "state database is up to date")
