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

from lifecycle.errors import LifecycleError
from lifecycle.iceberg.reachability import metadata_files
from lifecycle.jobs.base import JobContext
from lifecycle.lineage import guard_catalog
from lifecycle.safety.deletes import TableFiles, delete_files, gc_enabled
from lifecycle.safety.paths import PathSet, is_under, parse
from lifecycle.schema_history.plan import JOB, LOG_PROPERTY, HistoryPlan
from lifecycle.state import models as m

DELETE_KIND = m.METADATA_DELETE


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


def removals_visible(metadata: Any, plan: dict[str, Any]) -> bool:
    """The commit landed (or someone made the same removals): no removed schema or spec is left. A metadata-
    only commit stages no file; the files it drives out are re-checked against the live metadata anyway."""
    schemas = {s.schema_id for s in metadata.schemas}
    specs = {s.spec_id for s in metadata.partition_specs}
    return not (schemas & set(plan.get("schemas_removed", ())) or specs & set(plan.get("specs_removed", ())))


def delete_dropped(ctx: JobContext, name: str, plan_id: str) -> tuple[int, int]:
    """Delete journaled metadata files no longer in the log (never the current one, never outside the table,
    never on a table with gc.enabled=false); entries still live are skipped. Returns (deleted, skipped)."""
    fresh = ctx.catalog.load_table(name)
    schemes = ctx.schemes()
    live = PathSet(metadata_files(fresh.metadata, fresh.metadata_location), schemes)
    files = TableFiles.of(fresh, name, schemes)
    pending = ctx.store.entries(plan_id=plan_id, kind=DELETE_KIND, states=[m.PENDING])
    if not gc_enabled(files.properties):
        ctx.store.transition_entries([e.entry_id for e in pending], m.PENDING, m.SKIPPED,
                                     info={"reason": "gc.enabled=false: no file of this table is deleted"})
        return 0, len(pending)
    keep = [e for e in pending if e.path in live or not is_under(parse(e.path), files.prefix, schemes)]
    ctx.store.transition_entries([e.entry_id for e in keep], m.PENDING, m.SKIPPED, info={"reason": "live or outside"})
    doomed = [e for e in pending if e not in keep]
    ctx.checkpoint(JOB)
    outcome = delete_files([e.path for e in doomed], files, JOB)
    by_path = {e.path: e for e in doomed}
    ctx.store.transition_entries([by_path[p].entry_id for p in outcome.done], m.PENDING, m.DELETED)
    if outcome.failed:
        path, err = next(iter(outcome.failed.items()))
        raise LifecycleError(f"{JOB} {name}: {len(outcome.failed)} metadata file deletes failed (first: {path}:"
                             f" {err}); they stay journaled for the next run")
    return len(outcome.done), len(keep)
