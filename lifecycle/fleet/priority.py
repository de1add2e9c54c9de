"""Lower this process's CPU and IO priority so analyst queries win contention on shared hosts."""

from __future__ import annotations

import ctypes
import os
import sys

_IOPRIO_CLASS_SHIFT = 13
_IOPRIO_WHO_PROCESS = 1
_IOPRIO_CLASS_BE = 2
_IOPRIO_CLASS_IDLE = 3
_SYS_IOPRIO_SET = {"x86_64": 251, "aarch64": 30}


def lower_priority(nice: int = 10, io_idle: bool = False) -> dict[str, object]:
    """Raise niceness by `nice` and drop IO priority (best-effort level 7, or the idle class).

    Returns what was applied; anything the platform refuses is skipped, never fatal.
    """
    applied: dict[str, object] = {}
    try:
        applied["nice"] = os.nice(nice)
    except OSError as exc:
        applied["nice_error"] = str(exc)
    if sys.platform.startswith("linux"):
        machine = os.uname().machine
        number = _SYS_IOPRIO_SET.get(machine)
        if number is not None:
            cls, level = (_IOPRIO_CLASS_IDLE, 0) if io_idle else (_IOPRIO_CLASS_BE, 7)
            libc = ctypes.CDLL(None, use_errno=True)
            rc = libc.syscall(number, _IOPRIO_WHO_PROCESS, 0, (cls << _IOPRIO_CLASS_SHIFT) | level)
            applied["ionice"] = "idle" if io_idle else "best-effort/7"
            if rc != 0:
                applied["ionice_error"] = os.strerror(ctypes.get_errno())
    return applied


def from_environment() -> dict[str, object]:
    """Apply LIFECYCLE_NICE (default 10; 0 disables) and LIFECYCLE_IONICE_IDLE=1."""
    raw = os.environ.get("LIFECYCLE_NICE", "10")
    try:
        value = int(raw)
    except ValueError:
        return {"nice_error": f"LIFECYCLE_NICE: expected a whole number, got {raw!r}; priority left as it is"}
    if value <= 0:
        return {"nice": "disabled"}
    return lower_priority(value, io_idle=os.environ.get("LIFECYCLE_IONICE_IDLE") == "1")
