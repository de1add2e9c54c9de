"""Named crash points for fault-injection tests. Inert unless LIFECYCLE_CRASH_AT names the point.

`LIFECYCLE_CRASH_AT=compact.after-stage` kills this process with SIGKILL when the job reaches that
point; `name:N` kills at its N-th passage. With `LIFECYCLE_CRASH_ONCE=<path>` only the first process of a
fleet to get there dies (it creates the file; every later passage, in any process, goes on): a worker whose
children all carry the variable then loses exactly one. Tests only; production never sets the variables.
"""

from __future__ import annotations

import os
import signal

_passages: dict[str, int] = {}


def _first_of_fleet(marker: str) -> bool:
    try:
        os.close(os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
    except FileExistsError:
        return False
    return True


def crash_point(name: str) -> None:
    target = os.environ.get("LIFECYCLE_CRASH_AT")
    if not target:
        return
    wanted, _, nth = target.partition(":")
    if wanted != name:
        return
    _passages[name] = _passages.get(name, 0) + 1
    if _passages[name] >= int(nth or 1):
        marker = os.environ.get("LIFECYCLE_CRASH_ONCE")
        if marker and not _first_of_fleet(marker):
            return
        os.kill(os.getpid(), signal.SIGKILL)
