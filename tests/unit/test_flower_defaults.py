"""Flower for this fleet: job messages carry the table and partition its task list shows, and a Flower
started as `celery -A workers.app flower` is read-only (its login only watches) unless told otherwise.
The real browser check is scripts/flower-check (docs/operations.md)."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from typing import Any

from workers.flower_defaults import TASKS_COLUMNS, label_message, labels


def test_job_messages_are_labelled_with_table_partition_and_origin() -> None:
    t = "archive.sda_observations"
    assert labels("lifecycle.compact", {"table": t, "partition": "mission_id=a,day=2024-03-15", "manual": True}) == (
        t, "mission_id=a,day=2024-03-15 (manual)")
    assert labels("lifecycle.expire", {"table": t, "source": "beat"}) == (t, "whole table (beat)")
    assert labels("lifecycle.plan-compaction", {"table": t, "manual": False}) == (t, "fan-out (scheduled)")
    assert labels("lifecycle.reap", {}) is None and labels("celery.chord", {"table": t}) is None

    headers: dict[str, Any] = {"task": "lifecycle.purge", "argsrepr": "()", "kwargsrepr": "{...}"}
    label_message(sender="lifecycle.purge", body=((), {"table": t, "manual": True}, {}), headers=headers)
    assert (headers["argsrepr"], headers["kwargsrepr"]) == (t, "whole table (manual)")


_FLOWER_OPTIONS = textwrap.dedent("""
    import sys
    sys.argv = ["celery", "-A", "workers.app", "flower"] + sys.argv[1:]
    import workers.app  # noqa: F401  (as `celery -A workers.app flower` loads it)
    from flower.command import apply_env_options, apply_options
    from flower.options import options
    apply_env_options()
    apply_options("celery", sys.argv[4:])
    print(options.read_only, options.tasks_columns)
""")


def flower_options(*argv: str, **env: str) -> str:
    out = subprocess.run([sys.executable, "-c", _FLOWER_OPTIONS, *argv], env={**os.environ, **env},
                         capture_output=True, text=True, timeout=60, check=True)
    return out.stdout.strip()


def test_flower_is_read_only_with_the_label_columns_unless_told_otherwise() -> None:
    assert flower_options() == f"True {TASKS_COLUMNS}"
    assert flower_options("--read_only=false") == f"False {TASKS_COLUMNS}"
    assert flower_options(FLOWER_READ_ONLY="false").startswith("False ")
