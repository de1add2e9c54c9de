"""Clock skew between beat and a worker must not skip a night's purge: beat emits inside the window with a
margin, and the worker tolerates `fleet.max_clock_skew_seconds`."""

from __future__ import annotations

import dataclasses
from datetime import UTC, date, datetime, timedelta
from typing import Any

from beat_schedule import CADENCES, cadence_schedule
from lifecycle.clock import ManualClock
from lifecycle.expiration.job import run_expire
from lifecycle.fleet.execution import run_fleet_job
from lifecycle.jobs.base import DONE, JobContext, JobRequest
from lifecycle.state.models import DELETED, PENDING
from lifecycle_cli.synth import ArchiveSpec, build_archive
from tests.conftest import with_table_settings

TABLE = "archive.sda_observations"
SPEC = ArchiveSpec(partitions=[("apollo-7", date(2024, 3, 15))], files_per_partition=2, file_bytes=(20_000, 40_000),
                   history_snapshots=12, history_rewrite_every=3)


def beat_emission(clock: ManualClock, last_run: datetime, settings: Any, start: datetime) -> datetime:
    """When beat (its clock stepped a second at a time) first emits the night's purge."""
    purge = cadence_schedule(next(c for c in CADENCES if c.job == "purge"), settings, clock)
    clock.set(start)
    for _ in range(3 * 3600):
        if purge.is_due(last_run)[0]:
            return clock.now()
        clock.advance(timedelta(seconds=1))
    raise AssertionError("beat never emitted the purge")


def test_a_worker_one_second_behind_beat_still_purges_that_night(
    catalog: Any, ctx: JobContext, clock: ManualClock,
) -> None:
    build_archive(catalog, SPEC, clock)
    ctx = dataclasses.replace(ctx, settings=with_table_settings(ctx.settings, TABLE, retention_days=30))
    assert run_expire(ctx, JobRequest("expire", TABLE)).status == DONE      # 20:00 on the 26th, by hand
    journal = ctx.store.entries(kind="purge", table_name=TABLE, states=[PENDING])
    assert journal                                                          # eligible 20:00 on the 27th

    beat_clock = ManualClock(clock.now())
    emitted = beat_emission(beat_clock, datetime(2026, 11, 27, 0, 5, tzinfo=UTC), ctx.settings,
                            datetime(2026, 11, 27, 23, 50, tzinfo=UTC))
    assert emitted.date() == date(2026, 11, 28) and emitted.hour == 0        # tonight's window, 00:00-06:00
    clock.set(emitted - timedelta(seconds=1))                               # the worker's clock: 1 s behind
    worker = dataclasses.replace(ctx, manual=False)
    result = run_fleet_job(worker, JobRequest("purge", TABLE, manual=False, run_id="purge-from-beat"))
    assert result.status == DONE, result
    assert result.counts["deleted"] == len(journal)
    assert {e.state for e in ctx.store.entries(kind="purge", table_name=TABLE)} == {DELETED}
