"""Which snapshots to expire: a pure function of table metadata, the retention settings and the clock.

Semantics follow Iceberg's ExpireSnapshots (which PyIceberg's `expire_snapshots` does not implement):

- a ref (branch or tag, never `main`) whose head is older than its `max-ref-age-ms` is removed;
- each remaining branch retains the ancestors of its head that are within its `min-snapshots-to-keep`
  (else the table's `min_snapshots_to_keep`) or younger than its `max-snapshot-age-ms` (else
  `retention_days`), walking back from the head and stopping at the first that is neither;
- each remaining tag retains its head;
- a snapshot on no ref's ancestry is retained while younger than `retention_days`;
- the current snapshot and every snapshot an in-flight plan is pinned to are always retained.

Everything else is expired.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta

from pyiceberg.table.metadata import TableMetadata
from pyiceberg.table.refs import MAIN_BRANCH, SnapshotRefType
from pyiceberg.table.snapshots import Snapshot

from lifecycle.clock import to_millis
from lifecycle.errors import ConfigError


@dataclass(frozen=True)
class Retention:
    retention_days: int
    min_snapshots_to_keep: int

    def __post_init__(self) -> None:
        if self.retention_days < 0:
            raise ConfigError(f"retention_days: must be 0 or more, got {self.retention_days}")
        if self.min_snapshots_to_keep < 1:
            raise ConfigError(f"min_snapshots_to_keep: must be at least 1, got {self.min_snapshots_to_keep}")


@dataclass(frozen=True)
class Selection:
    """The outcome: snapshot ids to expire (oldest first), refs to remove, and what was retained."""

    expire_ids: tuple[int, ...]
    expired_refs: tuple[str, ...]
    retained_ids: frozenset[int]
    cutoff_ms: int

    def __bool__(self) -> bool:
        return bool(self.expire_ids or self.expired_refs)


def select_expired(
    metadata: TableMetadata, now: datetime, retention: Retention, pinned: Iterable[int] = (),
) -> Selection:
    now_ms = to_millis(now)
    cutoff_ms = to_millis(now - timedelta(days=retention.retention_days))
    by_id = {s.snapshot_id: s for s in metadata.snapshots}
    retained: set[int] = set()
    expired_refs: list[str] = []
    on_some_ref: set[int] = set()

    for name, ref in sorted(metadata.refs.items()):
        head = by_id.get(ref.snapshot_id)
        if head is None:
            continue
        if (name != MAIN_BRANCH and ref.max_ref_age_ms is not None
                and now_ms - head.timestamp_ms > ref.max_ref_age_ms):
            expired_refs.append(name)
            continue
        if ref.snapshot_ref_type == SnapshotRefType.TAG:
            retained.add(head.snapshot_id)
            continue
        min_keep = ref.min_snapshots_to_keep or retention.min_snapshots_to_keep
        branch_cutoff = now_ms - ref.max_snapshot_age_ms if ref.max_snapshot_age_ms else cutoff_ms
        kept = 0
        snap: Snapshot | None = head
        walking = True
        while snap is not None:
            on_some_ref.add(snap.snapshot_id)
            if walking and (kept < min_keep or snap.timestamp_ms >= branch_cutoff):
                retained.add(snap.snapshot_id)
                kept += 1
            else:
                walking = False
            parent = snap.parent_snapshot_id
            snap = by_id.get(parent) if parent is not None else None

    # Snapshots on no live ref's ancestry (including those of expired refs) age out by the table default.
    for snap in metadata.snapshots:
        if snap.snapshot_id not in on_some_ref and snap.timestamp_ms >= cutoff_ms:
            retained.add(snap.snapshot_id)
    if metadata.current_snapshot_id is not None:
        retained.add(metadata.current_snapshot_id)
    retained |= {p for p in pinned if p in by_id}

    expire = sorted((s for s in metadata.snapshots if s.snapshot_id not in retained),
                    key=lambda s: (s.timestamp_ms, s.snapshot_id))
    return Selection(tuple(s.snapshot_id for s in expire), tuple(expired_refs), frozenset(retained), cutoff_ms)
