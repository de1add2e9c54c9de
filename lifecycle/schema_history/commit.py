"""One metadata-only commit: remove the unused schemas and specs and bound the metadata log; then delete the
journaled metadata files that have left the log (re-checked against the metadata the commit produced)."""

from __future__ import annotations

from typing import Any

from pyiceberg.table import Table
from pyiceberg.table.update import (
    AssertCurrentSchemaId,
    AssertDefaultSpecId,
    AssertTableUUID,
    RemovePartitionSpecsUpdate,
    RemoveSchemasUpdate,
    SetPropertiesUpdate,
)

from lifecycle.jobs.base import JobContext
from lifecycle.lineage import guard_catalog
from lifecycle.reachability import metadata_files
from lifecycle.schema_history.plan import JOB, LOG_PROPERTY, HistoryPlan
from lifecycle.state import models as m

DELETE_KIND = "metadata-delete"


def commit_history(catalog: Any, table: Table, plan: HistoryPlan) -> Any:
    meta = table.metadata
    updates: list[Any] = []
    if plan.schemas_removed:
        updates.append(RemoveSchemasUpdate(schema_ids=list(plan.schemas_removed)))
    if plan.specs_removed:
        updates.append(RemovePartitionSpecsUpdate(spec_ids=list(plan.specs_removed)))
    # always part of the commit: it is what trims the metadata log PyIceberg writes
    updates.append(SetPropertiesUpdate(updates={LOG_PROPERTY: str(plan.metadata_log_max)}))
    requirements = (AssertTableUUID(uuid=meta.table_uuid),
                    AssertCurrentSchemaId(current_schema_id=plan.current_schema_id),
                    AssertDefaultSpecId(default_spec_id=plan.default_spec_id))
    return guard_catalog(catalog).commit_table(table, requirements, tuple(updates))


def landed(metadata: Any, plan: dict[str, Any]) -> bool:
    """The removals are visible in the metadata (the commit landed, or someone did the same)."""
    schemas = {s.schema_id for s in metadata.schemas}
    specs = {s.spec_id for s in metadata.partition_specs}
    return not (schemas & set(plan.get("schemas_removed", ())) or specs & set(plan.get("specs_removed", ())))


def delete_dropped(ctx: JobContext, name: str, plan_id: str) -> tuple[int, int]:
    """Delete journaled metadata files no longer in the log (never the current one, never outside the table);
    entries still live are skipped. Returns (deleted, skipped)."""
    fresh = ctx.catalog.load_table(name)
    live = metadata_files(fresh.metadata, fresh.metadata_location)
    location = fresh.location().rstrip("/") + "/"
    deleted = skipped = 0
    for entry in ctx.store.entries(plan_id=plan_id, kind=DELETE_KIND, states=[m.PENDING]):
        if entry.path in live or not entry.path.startswith(location):
            ctx.store.transition_entries([entry.entry_id], m.PENDING, m.SKIPPED, info={"reason": "live or outside"})
            skipped += 1
            continue
        ctx.checkpoint(JOB)
        try:
            fresh.io.delete(entry.path)
        except FileNotFoundError:
            pass                                     # already gone: done
        ctx.store.transition_entries([entry.entry_id], m.PENDING, m.DELETED)
        deleted += 1
    return deleted, skipped
