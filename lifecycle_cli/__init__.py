"""`lifecycle-cli`: operate the fleet. Bad input → one line, exit 2; a failed job → exit 1."""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence

import click

from lifecycle.errors import LifecycleError
from lifecycle.log import mask
from lifecycle_cli.common import cli

# Each command module attaches its commands to `cli`.
from lifecycle_cli import cold, db, demo, enqueue, quarantine, run, status  # noqa: F401  isort: skip


def main(argv: Sequence[str] | None = None) -> None:
    try:
        cli.main(args=list(argv) if argv is not None else None, prog_name="lifecycle-cli", standalone_mode=False)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except click.exceptions.Abort:
        click.echo("lifecycle-cli: aborted", err=True)
        sys.exit(1)
    except click.ClickException as exc:
        click.echo(f"lifecycle-cli: error: {exc.format_message()}", err=True)
        sys.exit(2)
    except LifecycleError as exc:
        click.echo(f"lifecycle-cli: error: {mask(str(exc)).splitlines()[0] if str(exc) else type(exc).__name__}",
                   err=True)
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        sys.exit(130)
    except Exception as exc:
        if os.environ.get("LIFECYCLE_DEBUG"):
            raise
        line = mask(str(exc)).splitlines()[0] if str(exc) else ""
        click.echo(f"lifecycle-cli: error: {type(exc).__name__}: {line}", err=True)
        sys.exit(1)
