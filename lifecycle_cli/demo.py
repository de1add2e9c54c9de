"""`lifecycle-cli demo`: the embedded default end to end; `demo --stop` stops its embedded PostgreSQL."""

from __future__ import annotations

import click

from lifecycle.errors import LifecycleError
from lifecycle_cli.common import cli, config_option, settings_from


@cli.command(help="Build a synthetic archive on the embedded default, run every job through a real worker, "
                  "print before and after. Exit 1 when a job did not finish.")
@click.option("--fresh/--keep", default=True, help="Start from an empty data folder (default) or keep it.")
@click.option("--keep-db", is_flag=True, help="Leave the embedded PostgreSQL running at exit.")
@click.option("--stop", "stop_only", is_flag=True, help="Only stop the embedded PostgreSQL of the data folder.")
@config_option
@click.pass_context
def demo(ctx: click.Context, fresh: bool, keep_db: bool, stop_only: bool, sub_config_path: str | None) -> None:
    from lifecycle.state import embedded_pg

    settings = settings_from(ctx, sub_config_path)
    if stop_only:
        found = embedded_pg.stop(settings.data_dir)
        click.echo(f"stopped {found.describe()}" if found.running else found.describe())
        return
    from lifecycle_cli.demo_run import run_demo

    if not run_demo(settings, fresh=fresh, echo=click.echo, keep_db=keep_db):
        raise LifecycleError("demo: a job did not finish (see above)")
