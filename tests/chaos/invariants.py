"""Invariants every fault-injection run must keep, checked against the catalog, the store and the disk."""

from __future__ import annotations

import hashlib
from collections import Counter
from pathlib import Path
from typing import Any

from pyiceberg.table import Table

from lifecycle.iceberg.reachability import ManifestCache, reachable_from
from lifecycle.state.store import StateStore


def content_checksum(table: Table, snapshot_id: int | None = None) -> tuple[int, str]:
    """(rows, order-independent checksum over every row) of the table at a snapshot."""
    data = table.scan(snapshot_id=snapshot_id).to_arrow() if snapshot_id else table.scan().to_arrow()
    if data.num_rows == 0:
        return 0, ""
    rows = sorted(hashlib.blake2b(repr(sorted(row.items())).encode(), digest_size=16).digest()
                  for row in data.to_pylist())
    return data.num_rows, hashlib.sha256(b"".join(rows)).hexdigest()


def missing_reachable_files(table: Table) -> list[str]:
    """Files some retained snapshot can read that are gone from storage (must always be empty)."""
    table = table.refresh()
    reach = reachable_from(table.io, table.metadata, table.metadata.snapshots, ManifestCache())
    return sorted(p for p in reach.all_paths() if not table.io.new_input(p).exists())


def deleted_twice(store: StateStore, table_name: str) -> list[str]:
    """Paths the journal marks deleted more than once for the same kind (must be empty)."""
    counts: Counter[tuple[str, str]] = Counter(
        (e.kind, e.path) for e in store.entries(table_name=table_name, states=["deleted"]))
    return sorted(f"{kind}:{path}" for (kind, path), n in counts.items() if n > 1)


def staged_leftovers(store: StateStore, table_name: str) -> list[str]:
    """Staged outputs of plans that are finished but were neither committed nor removed."""
    out = []
    for e in store.entries(table_name=table_name, states=["pending", "written"]):
        if e.kind not in ("stage", "stage-manifest"):
            continue
        plan = store.plan(e.plan_id)
        if plan is not None and plan.state in ("done", "abandoned", "failed"):
            out.append(e.path)
    return out


def cold_duplicates(store: StateStore, table_name: str) -> list[str]:
    counts = Counter(o.source_path for o in store.cold_objects(table_name))
    return sorted(p for p, n in counts.items() if n > 1)


def data_dir_files(table: Table) -> set[str]:
    root = Path(table.location().removeprefix("file://"))
    return {f"file://{p}" for p in root.rglob("*") if p.is_file()}


def check_all(table: Table, store: StateStore, reference: tuple[int, str]) -> dict[str, Any]:
    """Every invariant; returns a report whose `ok` is True only if all hold."""
    table = table.refresh()
    report: dict[str, Any] = {
        "content": content_checksum(table) == reference,
        "missing_reachable": missing_reachable_files(table),
        "deleted_twice": deleted_twice(store, _name(table)),
        "staged_leftovers": staged_leftovers(store, _name(table)),
        "cold_duplicates": cold_duplicates(store, _name(table)),
    }
    report["ok"] = report["content"] and not any(
        report[k] for k in ("missing_reachable", "deleted_twice", "staged_leftovers", "cold_duplicates"))
    return report


def _name(table: Table) -> str:
    return ".".join(table.name())
