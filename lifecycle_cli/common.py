"""The click group and the options every command shares."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any, TypeVar

import click

from lifecycle import log
from lifecycle.jobs.specs import JOBS
from lifecycle.settings import Settings, load

F = TypeVar("F", bound=Callable[..., Any])


class _JobType(click.ParamType):  # type: ignore[type-arg]  # generic only in the stubs, not at runtime
    name = "JOB"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> str:
        from lifecycle.jobs.registry import check_job

        return check_job(str(value))


JOB = _JobType()


_HELP = "Artemis Lifecycle: keep an Iceberg archive fast, small and auditable.\n\n\b\nJobs:\n" + "\n".join(
    f"  {s.name:<24}{s.help}" for s in JOBS)


@click.group(help=_HELP)
@click.option("--config", "config_path", type=str, default=None, help="TOML configuration file.")
@click.option("--log-level", default="WARNING", show_default=True, type=click.Choice(log.LEVELS, case_sensitive=False),
              help="Logging level (JSON logs on stderr).")
@click.pass_context
def cli(ctx: click.Context, config_path: str | None, log_level: str) -> None:
    ctx.ensure_object(dict)
    ctx.obj["config_path"] = config_path
    log.configure(log_level.upper())


def config_option(fn: F) -> F:
    """`--config` accepted after the subcommand too."""
    return click.option("--config", "sub_config_path", type=str, default=None,
                        help="TOML configuration file.")(fn)


def settings_from(ctx: click.Context, sub_config_path: str | None) -> Settings:
    path = sub_config_path or (ctx.obj or {}).get("config_path")
    return load(path)


def emit_json(payload: Any) -> None:
    click.echo(json.dumps(payload, default=str, sort_keys=True))
