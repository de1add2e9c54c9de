"""Rules of the table's commit turn that a crash can lead to, against a real catalog and PostgreSQL: a group
that comes up for commit again although its commit landed is finished `done`, its files kept."""

from __future__ import annotations

import os
from pathlib import Path

from lifecycle.compaction.commit_turn import BatchSettings, commit_ready
from lifecycle.compaction.committer import COMMIT_LOCK_KIND
from lifecycle.jobs.base import JobContext
from lifecycle.state.locks import AdvisoryLock
from lifecycle.state.models import COMMITTING, DONE, READY
from tests.integration.test_compaction import TABLE, A, checksum, files_by_partition, rows_of, scaled
from tests.integration.test_safety_compaction import compact_killed_after_its_commit


def test_a_dropped_group_whose_outputs_the_table_reads_is_done_and_its_files_stay(ctx: JobContext,
                                                                                 tmp_path: Path) -> None:
    ctx = scaled(ctx)
    compact_killed_after_its_commit(ctx, tmp_path)
    table = ctx.catalog.load_table(TABLE)
    files, rows = files_by_partition(table)[A], checksum(rows_of(table))
    (plan,) = ctx.store.open_plans("compact", TABLE, A)
    outputs = set(plan.payload["outputs"])
    assert outputs <= set(files)
    # As if the outcome had been taken for "did not land": the group is up for commit again. Its inputs are
    # gone (its own commit removed them), so the batch drops it -- and must not abandon it.
    ctx.store.transition_plan(plan.plan_id, COMMITTING, READY)

    with AdvisoryLock(ctx.db_url, COMMIT_LOCK_KIND, TABLE) as lock:
        assert lock.acquired
        snapshots = commit_ready(ctx, TABLE, lock, BatchSettings(linger_seconds=0.0), [plan.plan_id])

    assert snapshots == 0
    done = ctx.store.plan(plan.plan_id)
    assert done is not None and done.state == DONE
    assert all(os.path.exists(p.removeprefix("file://")) for p in outputs)
    table = ctx.catalog.load_table(TABLE)
    assert files_by_partition(table)[A] == files
    assert checksum(rows_of(table)) == rows
    assert not ctx.store.entries(plan_id=plan.plan_id, kind="stage", states=["pending", "written"])
