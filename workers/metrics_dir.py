"""PROMETHEUS_MULTIPROC_DIR for a worker: chosen and emptied in the main process before the pool forks.

Every prefork child inherits the variable and writes its samples to its own files there; the main process
serves their sum on /metrics (workers/signals.py). lifecycle/metrics.py makes prometheus-client use that
folder even when something imported prometheus-client before the variable was set (the `celery` command
does: Flower's command plug-in imports it).

- Variable unset (the README's `celery -A workers.app worker`): a new private folder, `mkdtemp` under the
  temp folder (unpredictable name, mode 0700), removed again when the main process exits.
- Variable set (the image: an emptyDir): created if missing (0700), then emptied of a previous run's
  samples. The wipe never follows a symbolic link: a symlinked folder or one owned by another user is
  refused, and links inside it are unlinked, not followed.
"""

from __future__ import annotations

import atexit
import os
import shutil
import stat
import tempfile
from pathlib import Path

from lifecycle.errors import ConfigError

ENV = "PROMETHEUS_MULTIPROC_DIR"
PREFIX = "lifecycle-prometheus-"


def multiproc_dir() -> Path | None:
    """The folder this process's metrics go to (None: not a multiprocess worker)."""
    path = os.environ.get(ENV)
    return Path(path) if path else None


def _check_owned_directory(folder: Path) -> None:
    st = os.lstat(folder)
    if stat.S_ISLNK(st.st_mode):
        raise ConfigError(f"{ENV}={folder} is a symbolic link: refusing to empty what it points to")
    if not stat.S_ISDIR(st.st_mode):
        raise ConfigError(f"{ENV}={folder} is not a directory")
    if st.st_uid != os.geteuid():
        raise ConfigError(f"{ENV}={folder} belongs to uid {st.st_uid}, not to this user ({os.geteuid()})")


def wipe(folder: Path) -> None:
    """Remove everything inside `folder` (a real directory we own) without following any symbolic link."""
    _check_owned_directory(folder)
    fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
    try:
        with os.scandir(fd) as entries:
            for entry in list(entries):
                if entry.is_dir(follow_symlinks=False):
                    shutil.rmtree(entry.name, dir_fd=fd)  # the fd-based rmtree never follows links
                else:
                    os.unlink(entry.name, dir_fd=fd)
    finally:
        os.close(fd)


def _remove_at_exit(folder: Path, owner_pid: int) -> None:
    if os.getpid() == owner_pid:  # a forked child inherits atexit handlers: only the creator removes it
        shutil.rmtree(folder, ignore_errors=True)


def prepare_multiproc_dir() -> Path:
    """Called once in the worker's main process before the pool starts; returns the folder."""
    configured = multiproc_dir()
    if configured is None:
        folder = Path(tempfile.mkdtemp(prefix=PREFIX))  # mode 0700, a name nobody can plant in advance
        os.environ[ENV] = str(folder)
        atexit.register(_remove_at_exit, folder, os.getpid())
        return folder
    if not os.path.lexists(configured):
        configured.mkdir(mode=0o700, parents=True)
    wipe(configured)
    return configured
