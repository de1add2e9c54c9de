"""Plan the compaction of a table's schema history: a pure function of the metadata and its manifest lists.

In use, and never removed:
- schemas: the current one and the schema id of every retained snapshot (every branch and tag head and
  every snapshot still in the metadata). A snapshot without a schema id keeps every schema.
- partition specs: the default one and the spec id of EVERY manifest (data and delete) in every retained
  snapshot's manifest list: PyIceberg accepts removing a spec live files use, and the table is then unreadable.
- sort orders: PyIceberg 0.12 has no update that removes a sort order, so none is removed; the ones other than
  the default are reported as `sort_orders_kept`.

The metadata log is trimmed to `metadata_log_max` entries by the commit itself: PyIceberg trims the log of
the metadata it writes to the table property `write.metadata.previous-versions-max`, which the commit sets to
`metadata_log_max`. The files that will leave the log are known before the commit and journaled first.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from pyiceberg.table.metadata import TableMetadata

from lifecycle.iceberg.reachability import ManifestCache

JOB = "compact-schema-history"
LOG_PROPERTY = "write.metadata.previous-versions-max"


@dataclass(frozen=True)
class HistoryPlan:
    table: str
    base_metadata_location: str
    current_schema_id: int
    default_spec_id: int
    schemas_removed: tuple[int, ...]
    specs_removed: tuple[int, ...]
    schemas_kept: tuple[int, ...]
    specs_kept: tuple[int, ...]
    sort_orders_kept: tuple[int, ...]
    metadata_log_max: int
    metadata_log_length: int
    metadata_files_dropped: tuple[str, ...]   # leave the log with this commit; deleted after it
    set_log_property: bool

    @property
    def empty(self) -> bool:
        return not (self.schemas_removed or self.specs_removed or self.metadata_log_length > self.metadata_log_max)

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        for k, v in out.items():
            if isinstance(v, tuple):
                out[k] = list(v)
        return out


def used_ids(io: Any, metadata: TableMetadata, cache: ManifestCache) -> tuple[set[int] | None, set[int]]:
    """(schema ids, spec ids) in use; schema ids None when some snapshot does not say its schema."""
    schemas: set[int] | None = {metadata.current_schema_id}
    specs = {metadata.default_spec_id}
    for snap in metadata.snapshots:
        if snap.schema_id is None:
            schemas = None
        elif schemas is not None:
            schemas.add(snap.schema_id)
        specs.update(ref.spec_id for ref in cache.manifest_list(io, snap.manifest_list))
    return schemas, specs


def plan_history(name: str, metadata: TableMetadata, metadata_location: str, io: Any, log_max: int,
                 cache: ManifestCache | None = None) -> HistoryPlan:
    log_max = max(1, log_max)
    schemas_used, specs_used = used_ids(io, metadata, cache or ManifestCache())
    all_schemas = sorted(s.schema_id for s in metadata.schemas)
    all_specs = sorted(s.spec_id for s in metadata.partition_specs)
    schemas_removed = [] if schemas_used is None else [i for i in all_schemas if i not in schemas_used]
    specs_removed = [i for i in all_specs if i not in specs_used]
    log = [e.metadata_file for e in metadata.metadata_log]
    after = [*log, metadata_location][-log_max:]
    dropped = [f for f in log if f not in after and f != metadata_location]
    return HistoryPlan(
        table=name, base_metadata_location=metadata_location, current_schema_id=metadata.current_schema_id,
        default_spec_id=metadata.default_spec_id, schemas_removed=tuple(schemas_removed),
        specs_removed=tuple(specs_removed),
        schemas_kept=tuple(i for i in all_schemas if i not in schemas_removed),
        specs_kept=tuple(i for i in all_specs if i not in specs_removed),
        sort_orders_kept=tuple(sorted(o.order_id for o in metadata.sort_orders
                                      if o.order_id != metadata.default_sort_order_id)),
        metadata_log_max=log_max, metadata_log_length=len(log), metadata_files_dropped=tuple(dropped),
        set_log_property=metadata.properties.get(LOG_PROPERTY) != str(log_max),
    )
