"""The local scratch folder of a sort or Z-order rewrite (its spilled runs): journaled, always removed.

The folder `<scratch root>/lifecycle-scratch-<plan id>` is journaled (kind `scratch`, with the host that
owns it) in the same transaction as the plan, before it exists. `use_scratch` removes it and closes its entry
when the rewrite ends, succeeded or failed. A run killed on the way leaves the folder and an open entry:
the next run of the partition (recovery, `recover_scratch`) removes every open scratch of the table whose plan
is no longer being executed, and each new scratch first sweeps its root for folders of plans that are no
longer executing (a crashed run on this host whose recovery ran on another host). Scratch is local disk:
nothing here is charged to the bandwidth limiter.
"""

from __future__ import annotations

import shutil
import socket
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from lifecycle import log
from lifecycle.errors import StaleStateError
from lifecycle.settings import Settings
from lifecycle.state.models import EXECUTING, PENDING, PLANNED, REMOVED, JournalKind, NewEntry
from lifecycle.state.store import StateStore

PREFIX = "lifecycle-scratch-"
SCRATCH = JournalKind.SCRATCH
_log = log.get("lifecycle.compaction")


def scratch_root(settings: Settings) -> Path:
    return Path(settings.compaction.scratch_dir or tempfile.gettempdir())


def scratch_entry(root: Path, plan_id: str) -> NewEntry:
    """The journal row of a plan's scratch folder (written with the plan, before the folder exists)."""
    return NewEntry(str(root / f"{PREFIX}{plan_id}"), info={"host": socket.gethostname()})


def _remove(folder: Path) -> None:
    shutil.rmtree(folder, ignore_errors=True)
    if folder.exists():
        raise OSError(f"scratch folder {folder} could not be removed")


def sweep(store: StateStore, root: Path) -> int:
    """Remove this host's scratch folders whose plans are not being executed; returns how many."""
    removed = 0
    for folder in root.glob(f"{PREFIX}*") if root.is_dir() else ():
        plan = store.plan(folder.name[len(PREFIX):])
        if plan is None or plan.state not in (PLANNED, EXECUTING):
            _remove(folder)
            removed += 1
            if plan is not None:
                ids = [e.entry_id for e in store.entries(plan_id=plan.plan_id, kind=SCRATCH, states=[PENDING])]
                _close(store, ids)
    return removed


def _close(store: StateStore, ids: list[int], info: dict[str, object] | None = None) -> None:
    try:
        store.transition_entries(ids, [PENDING], REMOVED, info)
    except StaleStateError:
        pass   # another process on this host closed it first: the folder is gone either way


@contextmanager
def use_scratch(store: StateStore, plan_id: str) -> Iterator[Path]:
    """The plan's journaled scratch folder, created now and removed (entry closed) however the block ends."""
    entries = store.entries(plan_id=plan_id, kind=SCRATCH, states=[PENDING])
    if len(entries) != 1:
        raise ValueError(f"plan {plan_id} has {len(entries)} open scratch entries, expected 1")
    folder = Path(entries[0].path)
    sweep(store, folder.parent)
    folder.mkdir(parents=True, exist_ok=True)
    try:
        yield folder
    finally:
        _remove(folder)
        store.transition_entries([entries[0].entry_id], [PENDING], REMOVED)


def recover_scratch(store: StateStore, table_name: str) -> int:
    """Remove the open scratch folders of the table's plans that nobody is executing; returns how many.

    Called by recovery after it has settled the partition's dead plans. A folder on another host cannot be
    reached from here: its entry is closed with that host named, and that host's next scratch sweeps it."""
    closed = 0
    for entry in store.entries(kind=SCRATCH, table_name=table_name, states=[PENDING]):
        plan = store.plan(entry.plan_id)
        if plan is not None and plan.state in (PLANNED, EXECUTING):
            continue
        folder = Path(entry.path)
        here = entry.info.get("host") in (None, socket.gethostname())
        if here:
            _remove(folder)
        _close(store, [entry.entry_id], {} if here else {"left_to_host": entry.info.get("host")})
        _log.event("compact.scratch_recovered", table=table_name, plan_id=entry.plan_id, path=str(folder),
                   host=entry.info.get("host"), removed=here)
        closed += 1
    return closed
