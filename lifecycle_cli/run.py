"""`lifecycle-cli run JOB`: run a job in this process (bypasses quiet windows, not the bandwidth budget).

On a terminal (and without --json) a progress bar on stderr follows the run: bytes of the groups for
compaction, files for purge and clean-orphans, objects listed by the orphan scan. Piped: nothing but the
result lines.
"""

from __future__ import annotations

import sys
from typing import Any

import click

from lifecycle.errors import LifecycleError
from lifecycle.iceberg.catalog import all_tables
from lifecycle.iceberg.partitions import parse_partition
from lifecycle.jobs.base import ABANDONED, JobRequest, JobResult
from lifecycle.jobs.runtime import build_context, execute, validate_request
from lifecycle_cli.common import JOB, cli, config_option, emit_json, settings_from
from lifecycle_cli.progress import TerminalBar


def _print_result(result: JobResult) -> None:
    where = result.table + (f" [{result.partition}]" if result.partition else "")
    counts = ", ".join(f"{k}={v}" for k, v in sorted(result.counts.items()))
    click.echo(f"{result.job} {where}: {result.status}" + (f" ({counts})" if counts else ""))
    for line in result.detail:
        click.echo(f"  {line}")


def _sum_counts(results: list[JobResult]) -> dict[str, Any]:
    total: dict[str, Any] = {}
    for r in results:
        for k, v in r.counts.items():
            total[k] = total.get(k, 0) + v
    return total


@cli.command(help="Run JOB in this process, for --table (or every configured table).")
@click.argument("job", type=JOB)
@click.option("--table", "table", default=None, help="namespace.table, or a bare name in the default namespace.")
@click.option("--partition", "partition", default=None, help="field=value[,field=value] (compact only).")
@click.option("--dry-run", is_flag=True, help="Print the plan; change nothing.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
@config_option
@click.pass_context
def run(ctx: click.Context, job: str, table: str | None, partition: str | None, dry_run: bool, as_json: bool,
        sub_config_path: str | None) -> None:
    settings = settings_from(ctx, sub_config_path)
    context = build_context(settings, manual=True)
    context.log_failures = False   # this command prints a failure itself, in one line
    bar = TerminalBar(sys.stderr) if sys.stderr.isatty() and not as_json else None
    context.on_progress = bar
    try:
        if partition is not None and table is None:
            raise click.UsageError("--partition needs --table")
        names = [table] if table else all_tables(context.catalog, settings)
        requests = []
        for name in names:  # validate everything before changing anything
            identifier, part = validate_request(context, job, name, partition)
            if job == "compact" and part is not None:
                from lifecycle.compaction.job import check_partition_exists

                tbl = context.catalog.load_table(identifier)
                check_partition_exists(tbl, identifier, parse_partition(part, tbl.spec(), tbl.schema()))
            requests.append(JobRequest(job, identifier, part, dry_run=dry_run, manual=True))
        results: list[JobResult] = []
        failed: list[str] = []
        for req in requests:
            try:
                results.append(execute(context, req))
            except LifecycleError as exc:
                if exc.exit_code == 2 or len(requests) == 1:
                    raise
                failed.append(f"{req.table}: {exc}")
        if bar is not None:
            bar.clear()
        if as_json:
            if len(results) == 1 and not failed:
                emit_json(results[0].to_dict())
            else:
                emit_json({"job": job, "table": table, "partition": partition, "counts": _sum_counts(results),
                           "results": [r.to_dict() for r in results], "failed": failed})
        else:
            for r in results:
                _print_result(r)
            if not requests:
                click.echo(f"{job}: no tables to run on")
        for line in failed:
            click.echo(f"lifecycle-cli: error: {line}", err=True)
        abandoned = [r for r in results if r.status == ABANDONED]
        for r in abandoned:
            click.echo(f"lifecycle-cli: error: {r.job} {r.table}: work was abandoned ({'; '.join(r.detail)})",
                       err=True)
        if failed or abandoned:
            sys.exit(1)
    finally:
        if bar is not None:
            bar.clear()
        context.store.close()
