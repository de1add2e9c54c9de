"""Plan a manifest rewrite: a pure function of the current snapshot's manifest list and the target size."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

from pyiceberg.manifest import ManifestContent, ManifestFile, read_manifest_list
from pyiceberg.table.metadata import TableMetadata

JOB = "rewrite-manifests"


@dataclass(frozen=True)
class ManifestPlan:
    table: str
    base_snapshot_id: int
    target_bytes: int
    data_manifests: int          # data manifests in the base snapshot (all rewritten)
    delete_manifests: int        # delete manifests (kept as they are)
    data_manifest_bytes: int
    entries: int                 # live data-file entries, rewritten as EXISTING
    spec_ids: tuple[int, ...]
    bound: int                   # a compact table has at most this many data manifests

    @property
    def compact(self) -> bool:
        return self.data_manifests <= max(1, self.bound)

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["spec_ids"] = list(self.spec_ids)
        out["compact"] = self.compact
        return out

    @staticmethod
    def from_dict(raw: dict[str, Any]) -> ManifestPlan:
        fields = {k: v for k, v in raw.items() if k in ManifestPlan.__dataclass_fields__}
        fields["spec_ids"] = tuple(fields.get("spec_ids", ()))
        return ManifestPlan(**fields)


def bound_for(total_bytes: int, target_bytes: int, groups: int) -> int:
    """Manifests cut at the target: every one but the last of each spec group holds >= target bytes."""
    return math.ceil(total_bytes / max(1, target_bytes)) + groups


def plan_rewrite(table: str, metadata: TableMetadata, manifests: list[ManifestFile],
                 target_bytes: int) -> ManifestPlan | None:
    """None when the table has no current snapshot."""
    snapshot = metadata.current_snapshot()
    if snapshot is None:
        return None
    data = [m for m in manifests if m.content == ManifestContent.DATA]
    total = sum(m.manifest_length for m in data)
    specs = tuple(sorted({m.partition_spec_id for m in data}))
    entries = sum((m.added_files_count or 0) + (m.existing_files_count or 0) for m in data)
    return ManifestPlan(
        table=table, base_snapshot_id=snapshot.snapshot_id, target_bytes=target_bytes,
        data_manifests=len(data), delete_manifests=len(manifests) - len(data), data_manifest_bytes=total,
        entries=entries, spec_ids=specs, bound=bound_for(total, target_bytes, len(specs)),
    )


def current_manifests(io: Any, metadata: TableMetadata) -> list[ManifestFile]:
    snapshot = metadata.current_snapshot()
    return list(read_manifest_list(io.new_input(snapshot.manifest_list))) if snapshot else []
