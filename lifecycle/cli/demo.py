"""`lifecycle-cli demo`: the embedded default end to end."""

from __future__ import annotations

import click

from lifecycle.cli.common import cli, config_option, settings_from


@cli.command(help="Build a synthetic archive on the embedded default, run every job, print before and after.")
@click.option("--fresh/--keep", default=True, help="Start from an empty data folder (default) or keep it.")
@config_option
@click.pass_context
def demo(ctx: click.Context, fresh: bool, sub_config_path: str | None) -> None:
    from lifecycle.demo import run_demo

    settings = settings_from(ctx, sub_config_path)
    run_demo(settings, fresh=fresh, echo=click.echo)
