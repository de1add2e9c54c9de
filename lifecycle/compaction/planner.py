"""The compaction planner: a pure function from a partition's file list to an immutable plan.

A partition is a candidate when it holds at least `min_small_files` data files smaller than
`small_file_bytes`; files at or above that size are left alone. Small files are packed, in a stable order,
into file groups of at most `max_group_bytes` (a file alone over it is a group of its own; a lone trailing file
joins the group before it, so a partition with two or more small files always has a group of two); each
group's output count is ceil(group bytes / target).

Merge-on-read: a file with too many deletes attached (`heavy_deletes`, decided by the scan from the table's
delete thresholds) is selected whatever its size, and a group holding one is rewritten whatever the number of
small files, even alone (as Iceberg's SizeBasedDataRewriter does): its rows are rewritten with the deletes
applied and the deletes can go.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

BINPACK = "binpack"
SORT = "sort"
ZORDER = "zorder"


@dataclass(frozen=True)
class FileInfo:
    path: str
    size: int
    records: int
    deletes: tuple[str, ...] = ()      # the delete files that apply to it (merge-on-read)
    heavy_deletes: bool = False        # rewritten for its deletes, whatever its size

    def to_list(self) -> list[Any]:
        return [self.path, self.size, self.records, *([list(self.deletes)] if self.deletes else [])]

    @staticmethod
    def from_list(raw: list[Any]) -> FileInfo:
        return FileInfo(raw[0], int(raw[1]), int(raw[2]), tuple(raw[3]) if len(raw) > 3 else ())


@dataclass(frozen=True)
class Strategy:
    name: str                                   # binpack | sort | zorder
    columns: tuple[str, ...] = ()               # z-order columns, or sort columns
    directions: tuple[str, ...] = ()            # sort: "asc"/"desc" per column
    nulls: tuple[str, ...] = ()                 # sort: "first"/"last" per column
    sort_order_id: int | None = None

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"name": self.name}
        if self.columns:
            out["columns"] = list(self.columns)
        if self.name == SORT:
            out.update(directions=list(self.directions), nulls=list(self.nulls), sort_order_id=self.sort_order_id)
        return out

    @staticmethod
    def from_dict(raw: dict[str, Any]) -> Strategy:
        return Strategy(raw["name"], tuple(raw.get("columns", ())), tuple(raw.get("directions", ())),
                        tuple(raw.get("nulls", ())), raw.get("sort_order_id"))


@dataclass(frozen=True)
class FileGroup:
    inputs: tuple[FileInfo, ...]
    output_count: int

    def paths(self) -> list[str]:
        return [f.path for f in self.inputs]

    @property
    def input_bytes(self) -> int:
        return sum(f.size for f in self.inputs)

    @property
    def records(self) -> int:
        return sum(f.records for f in self.inputs)

    @property
    def deletes(self) -> list[str]:
        """The delete files that apply to its inputs, each once."""
        return sorted({d for f in self.inputs for d in f.deletes})

    def to_dict(self) -> dict[str, Any]:
        out = {"inputs": [f.to_list() for f in self.inputs], "input_files": len(self.inputs),
               "input_bytes": self.input_bytes, "records": self.records, "planned_outputs": self.output_count}
        if self.deletes:
            out["delete_files"] = len(self.deletes)
        return out

    @staticmethod
    def from_dict(raw: dict[str, Any]) -> FileGroup:
        return FileGroup(tuple(FileInfo.from_list(f) for f in raw["inputs"]), int(raw["planned_outputs"]))


@dataclass(frozen=True)
class PartitionPlan:
    partition: str
    strategy: Strategy
    groups: tuple[FileGroup, ...]
    small_files: int
    total_files: int

    def to_dict(self) -> dict[str, Any]:
        return {
            "partition": self.partition, "strategy": self.strategy.to_dict(), "small_files": self.small_files,
            "total_files": self.total_files, "input_files": sum(len(g.inputs) for g in self.groups),
            "input_bytes": sum(g.input_bytes for g in self.groups),
            "planned_outputs": sum(g.output_count for g in self.groups),
            "delete_files": len({d for g in self.groups for d in g.deletes}),
            "groups": [{k: v for k, v in g.to_dict().items() if k != "inputs"} for g in self.groups],
        }


@dataclass(frozen=True)
class Thresholds:
    small_file_bytes: int
    min_small_files: int
    target_file_bytes: int
    max_group_bytes: int

    def __post_init__(self) -> None:
        if self.target_file_bytes <= 0 or self.max_group_bytes <= 0:
            raise ValueError("target_file_bytes and max_group_bytes must be positive")


@dataclass(frozen=True)
class TablePlan:
    table: str
    snapshot_id: int | None
    partitions: tuple[PartitionPlan, ...] = field(default_factory=tuple)
    refused: tuple[tuple[str, str], ...] = ()   # (partition, why): not compacted (merge-on-read, see scan)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"table": self.table, "snapshot_id": self.snapshot_id,
                               "partitions": [p.to_dict() for p in self.partitions]}
        if self.refused:
            out["refused"] = dict(self.refused)
        return out


def output_count(group_bytes: int, records: int, target_file_bytes: int) -> int:
    """ceil(bytes / target), never more files than rows and never fewer than one."""
    return max(1, min(math.ceil(group_bytes / target_file_bytes), max(records, 1)))


def _pack(files: Sequence[FileInfo], limit: int) -> list[list[FileInfo]]:
    groups: list[list[FileInfo]] = []
    current: list[FileInfo] = []
    size = 0
    for f in files:
        if current and size + f.size > limit:
            groups.append(current)
            current, size = [], 0
        current.append(f)
        size += f.size
    if len(current) == 1 and groups:
        groups[-1].append(current[0])  # a lone trailing file joins the previous group (bound + one small file)
    elif current:
        groups.append(current)
    return groups


def is_candidate(small_files: int, thresholds: Thresholds) -> bool:
    """Does a partition with this many small files get a plan? (The fan-out decides from counts alone: with
    two or more small files `_pack` always yields a group of at least two, so a plan is never empty.)"""
    return small_files >= max(thresholds.min_small_files, 2)


def plan_partition(
    partition: str, files: Sequence[FileInfo], strategy: Strategy, thresholds: Thresholds
) -> PartitionPlan | None:
    """The plan for one partition, or None when it is not a candidate."""
    small = sorted((f for f in files if f.size < thresholds.small_file_bytes), key=lambda f: (f.path, f.size))
    enough_small = is_candidate(len(small), thresholds)
    selected = sorted((f for f in files if f.size < thresholds.small_file_bytes or f.heavy_deletes),
                      key=lambda f: (f.path, f.size))
    if not enough_small and not any(f.heavy_deletes for f in selected):
        return None
    groups = []
    for chunk in _pack(selected, thresholds.max_group_bytes):
        if not any(f.heavy_deletes for f in chunk) and (not enough_small or len(chunk) < 2):
            continue  # rewriting one file into one file gains nothing (unless it drops deletes)
        total = sum(f.size for f in chunk)
        groups.append(FileGroup(tuple(chunk), output_count(total, sum(f.records for f in chunk),
                                                           thresholds.target_file_bytes)))
    if not groups:
        return None
    return PartitionPlan(partition, strategy, tuple(groups), len(small), len(files))


def plan_table(
    table: str, snapshot_id: int | None, partitions: dict[str, Sequence[FileInfo]], strategy: Strategy,
    thresholds: Thresholds,
) -> TablePlan:
    plans = [plan_partition(p, partitions[p], strategy, thresholds) for p in sorted(partitions)]
    return TablePlan(table, snapshot_id, tuple(p for p in plans if p is not None))
