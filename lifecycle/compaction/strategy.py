"""Strategy selection from table metadata (design.md): `lifecycle.zorder-columns` wins, else the table's
Iceberg sort order, else bin-pack. Also the thresholds a table's settings and properties give the planner."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pyiceberg.schema import Schema
from pyiceberg.table.sorting import NullOrder, SortDirection, SortOrder

from lifecycle.compaction.planner import BINPACK, SORT, ZORDER, Strategy, Thresholds
from lifecycle.errors import ConfigError
from lifecycle.settings import TableSettings

ZORDER_PROPERTY = "lifecycle.zorder-columns"
MAX_GROUP_PROPERTY = "lifecycle.compaction.max-group-bytes"
# Groups of every strategy are sized alike: bin-pack streams, and sort and Z-order stay within the memory
# budget whatever the group size (larger groups spill to scratch: lifecycle.compaction.bounded).
GROUP_OUTPUTS = 64


def select_strategy(properties: Mapping[str, str], sort_order: SortOrder | None, schema: Schema) -> Strategy:
    raw = (properties.get(ZORDER_PROPERTY) or "").strip()
    if raw:
        columns = tuple(c.strip() for c in raw.split(",") if c.strip())
        names = []
        for c in columns:
            try:
                names.append(schema.find_field(c, case_sensitive=False).name)
            except ValueError:
                raise ConfigError(f"table property {ZORDER_PROPERTY}: unknown column {c!r}") from None
        if not names:
            raise ConfigError(f"table property {ZORDER_PROPERTY}: no column named")
        return Strategy(ZORDER, tuple(names))
    if sort_order is not None and not sort_order.is_unsorted:
        names, dirs, nulls = [], [], []
        for f in sort_order.fields:
            names.append(schema.find_field(f.source_id).name)
            dirs.append("desc" if f.direction == SortDirection.DESC else "asc")
            nulls.append("first" if f.null_order == NullOrder.NULLS_FIRST else "last")
        return Strategy(SORT, tuple(names), tuple(dirs), tuple(nulls), sort_order.order_id)
    return Strategy(BINPACK)


def thresholds_for(ts: TableSettings, properties: Mapping[str, str], strategy: Strategy) -> Thresholds:
    target = ts.target_file_bytes
    raw: Any = properties.get(MAX_GROUP_PROPERTY)
    if raw is not None:
        try:
            max_group = int(raw)
        except ValueError:
            raise ConfigError(f"table property {MAX_GROUP_PROPERTY}: expected bytes, got {raw!r}") from None
    else:
        max_group = GROUP_OUTPUTS * target
    return Thresholds(ts.small_file_bytes, ts.min_small_files, target, max(max_group, 1))
