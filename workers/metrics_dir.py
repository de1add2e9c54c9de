"""PROMETHEUS_MULTIPROC_DIR for a worker: set (default under the temp folder) and wiped at start.

prometheus-client picks its multiprocess value class when first imported, so this runs in the worker's main
process before anything imports it (workers/app.py) and before the prefork pool starts; every child then
writes its samples to its own files there, and the samples of a previous run are gone.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path


def multiproc_dir() -> Path:
    path = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if not path:
        path = os.path.join(tempfile.gettempdir(), f"lifecycle-prometheus-{os.getpid()}")
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = path
    return Path(path)


def wipe(folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for child in folder.iterdir():
        if child.is_dir():
            shutil.rmtree(child, ignore_errors=True)
        else:
            child.unlink(missing_ok=True)


def prepare_multiproc_dir() -> Path:
    folder = multiproc_dir()
    wipe(folder)
    return folder
