"""What Flower shows of this fleet, and Flower's defaults when `celery -A workers.app flower` starts.

- Labels: every job message is published with `argsrepr` = the table and `kwargsrepr` = the partition
  (or "whole table", "fan-out") and where it came from (manual, beat, scheduled), set in Celery's
  `before_task_publish` (workers/signals.py) for every sender (CLI, fan-out, reaper, beat). Flower's task
  list shows them in its `args` and `kwargs` columns next to the task name (`lifecycle.compact`, ...):
  job, table and partition without opening a task. Two short columns, because Flower cuts each at 400 px.
- Read-only: Flower's web buttons and its API cannot send, revoke or rate-limit tasks, nor shut down,
  restart or resize workers: its one login (basic auth) only watches. To allow operations anyway, start it
  with `--read_only=false` (or `FLOWER_READ_ONLY=false`); see docs/operations.md.

Command-line flags, FLOWER_* variables and a `flowerconfig.py` all still win over these defaults.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from workers.config import JOB_TASKS, PLAN_COMPACTION_TASK

TASKS_COLUMNS = "name,args,kwargs,state,received,started,runtime,worker,uuid"
_LABELLED = {*JOB_TASKS.values(), PLAN_COMPACTION_TASK}


def apply() -> None:
    from flower.options import options  # type: ignore[import-untyped]  # only in a `flower` process

    options.tasks_columns = TASKS_COLUMNS
    options.read_only = True


def labels(task: str, kwargs: Mapping[str, Any]) -> tuple[str, str] | None:
    """(argsrepr, kwargsrepr) of a job message: the table; the partition and the message's origin."""
    if task not in _LABELLED or not isinstance(kwargs.get("table"), str):
        return None
    what = kwargs.get("partition") or ("fan-out" if task == PLAN_COMPACTION_TASK else "whole table")
    origin = "beat" if kwargs.get("source") == "beat" else "manual" if kwargs.get("manual") else "scheduled"
    return kwargs["table"], f"{what} ({origin})"


def label_message(sender: str | None = None, body: Any = None, headers: dict[str, Any] | None = None,
                  **_: Any) -> None:
    """Celery's `before_task_publish`: put the labels in the message headers Flower displays."""
    if headers is None or not isinstance(body, (tuple, list)) or len(body) < 2 or not isinstance(body[1], dict):
        return
    found = labels(str(sender or headers.get("task", "")), body[1])
    if found is not None:
        headers["argsrepr"], headers["kwargsrepr"] = found
