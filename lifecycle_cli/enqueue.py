"""`lifecycle-cli enqueue JOB [--table T] [--partition P]`: send a job to the fleet, print the task id(s).

Messages sent here are manual: they bypass quiet windows, never the bandwidth budget. `compact` without
`--partition` sends the table's planning task (it fans out per partition on the workers).
"""

from __future__ import annotations

import os
from pathlib import Path

import click

from lifecycle.errors import ServiceUnavailableError
from lifecycle.iceberg.catalog import all_tables, open_catalog
from lifecycle.jobs.base import JobContext
from lifecycle.log import mask
from lifecycle_cli.common import JOB, cli, config_option, emit_json, settings_from


@cli.command(help="Send JOB to the fleet for --table (or every configured table); print the task id(s).")
@click.argument("job", type=JOB)
@click.option("--table", "table", default=None, help="namespace.table, or a bare name in the default namespace.")
@click.option("--partition", "partition", default=None, help="field=value[,field=value] (compact only).")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
@config_option
@click.pass_context
def enqueue(ctx: click.Context, job: str, table: str | None, partition: str | None, as_json: bool,
            sub_config_path: str | None) -> None:
    from lifecycle.jobs.runtime import validate_request

    settings = settings_from(ctx, sub_config_path)
    if partition is not None and table is None:
        raise click.UsageError("--partition needs --table")
    catalog = open_catalog(settings)
    # validate_request needs only the settings and the catalog of a context: nothing else is opened here.
    probe = JobContext(settings=settings, catalog=catalog, store=None, clock=None, limiter=None,  # type: ignore[arg-type]  # see above
                       db_url="")
    names = [table] if table else all_tables(catalog, settings)
    requests = [validate_request(probe, job, name, partition) for name in names]  # all valid before sending

    if settings.source and Path(settings.source).is_file():  # workers.app loads the same settings
        os.environ["LIFECYCLE_CONFIG"] = str(Path(settings.source).resolve())
    from kombu.exceptions import OperationalError

    from workers import tasks  # lazily: lifecycle/ never imports celery at module level

    sent: list[dict[str, str | None]] = []
    for identifier, part in requests:
        try:
            if job == "compact" and part is None:
                task_id = tasks.send_plan_compaction(identifier, manual=True)
                kind = "plan"
            else:
                task_id = tasks.send_job(job, identifier, part, manual=True)
                kind = "run"
        except (OperationalError, OSError) as exc:  # unreachable broker: one line, exit 2 (not a traceback)
            raise ServiceUnavailableError(f"broker unreachable ({mask(str(exc)).splitlines()[0] if str(exc) else ''});"
                                          f" {len(sent)} of {len(requests)} message(s) sent") from None
        sent.append({"job": job, "table": identifier, "partition": part, "task_id": task_id, "kind": kind})
    if as_json:
        emit_json({"job": job, "tasks": sent})
        return
    if not sent:
        click.echo(f"{job}: no tables to enqueue for")
    for s in sent:
        click.echo(s["task_id"])
