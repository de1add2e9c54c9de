"""Named crash points for fault-injection tests. Inert unless LIFECYCLE_CRASH_AT names the point.

`LIFECYCLE_CRASH_AT=compact.after-stage` kills this process with SIGKILL when the job reaches that
point; `name:N` kills at its N-th passage. Tests only; production never sets the variable.
"""

from __future__ import annotations

import os
import signal

_passages: dict[str, int] = {}


def crash_point(name: str) -> None:
    target = os.environ.get("LIFECYCLE_CRASH_AT")
    if not target:
        return
    wanted, _, nth = target.partition(":")
    if wanted != name:
        return
    _passages[name] = _passages.get(name, 0) + 1
    if _passages[name] >= int(nth or 1):
        os.kill(os.getpid(), signal.SIGKILL)
