"""Removing what a plan staged for a commit that did not land: the one copy of that rule.

Called after a CONFLICT (the commit surely did not land) or by recovery once `landed()` said no. Every staged
path is checked against the table location by the path identity before anything is deleted (a path outside
refuses the whole removal, nothing deleted, the entries stay); a missing file counts as removed; a file that
an expiration has queued for purge is left to purge (and its cold copy), not deleted here. Each entry is
marked only after its file is gone.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from lifecycle.errors import LifecycleError
from lifecycle.safety.deletes import TableFiles, delete_files
from lifecycle.safety.paths import PathSet, Schemes
from lifecycle.state.models import PURGE, PURGE_QUEUED_STATES, REMOVED, SKIPPED, STAGED_KINDS, STAGED_OPEN_STATES
from lifecycle.state.store import StateStore


def remove_staged(store: StateStore, table: Any, identifier: str, plan_id: str, schemes: Schemes,
                  job: str, kinds: Sequence[str] = STAGED_KINDS) -> int:
    """Delete a plan's open staged files and mark their entries removed; returns how many entries closed."""
    entries = [e for e in store.entries(plan_id=plan_id, states=STAGED_OPEN_STATES) if e.kind in kinds]
    if not entries:
        return 0
    queued = PathSet(store.guarded_paths(identifier, (PURGE,), PURGE_QUEUED_STATES), schemes)
    left = [e for e in entries if e.path in queued]
    doomed = [e for e in entries if e.path not in queued]
    outcome = delete_files([e.path for e in doomed], TableFiles.of(table, identifier, schemes), job, own_staged=True)
    by_path = {e.path: e for e in doomed}
    done = [by_path[p].entry_id for p in outcome.done]
    store.transition_entries(done, STAGED_OPEN_STATES, REMOVED)
    store.transition_entries([e.entry_id for e in left], STAGED_OPEN_STATES, SKIPPED,
                             {"reason": "queued for purge by an expiration; left to purge"})
    if outcome.failed:
        path, err = next(iter(outcome.failed.items()))
        raise LifecycleError(f"{job} {identifier}: {len(outcome.failed)} staged file(s) could not be removed"
                             f" (first: {path}: {err}); they stay journaled for the next run")
    return len(done) + len(left)
