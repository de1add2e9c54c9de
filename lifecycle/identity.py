"""Who the fleet is, for the lineage fields of every commit it makes."""

from __future__ import annotations

import functools
import os
import socket
import subprocess
from pathlib import Path

from lifecycle import __version__


@functools.cache
def vcs_hash() -> str:
    env = os.environ.get("LIFECYCLE_COMMIT_HASH")
    if env:
        return env
    root = Path(__file__).resolve().parent.parent
    try:
        out = subprocess.run(
            ["git", "-C", str(root), "rev-parse", "--short=12", "HEAD"],
            capture_output=True, text=True, timeout=5, check=False,
        )
        return out.stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def commit_hash() -> str:
    """The package's version and VCS hash, e.g. `artemis-lifecycle 0.1.0+1a2b3c4d5e6f`."""
    return f"artemis-lifecycle {__version__}+{vcs_hash()}"


def worker_id() -> str:
    return os.environ.get("LIFECYCLE_WORKER_ID") or f"lifecycle@{socket.gethostname()}:{os.getpid()}"


def fleet_properties(plan_id: str, job: str) -> dict[str, str]:
    """Snapshot summary properties carried by every commit the fleet makes."""
    return {
        "writer.id": worker_id(),
        "writer.commit_hash": commit_hash(),
        "writer.invocation_id": plan_id,
        "lifecycle.plan-id": plan_id,
        "lifecycle.job": job,
    }
