"""Sort and Z-order rewrites: output files ordered by the table's sort order; Z-order files tight."""

from __future__ import annotations

import random
from datetime import date
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from pyiceberg.table.sorting import NullOrder
from pyiceberg.transforms import IdentityTransform

from lifecycle.iceberg.datafiles import data_file_from_parquet
from lifecycle.jobs.base import DONE, JobContext
from lifecycle_cli.synth import make_rows, partition_path, synth_lineage, write_file
from tests.integration.test_compaction import A, checksum, compact, files_by_partition, make_archive, rows_of, scaled


def _add_rows_with_null_kinds(table: Any) -> None:
    rows = make_rows(random.Random(5), "apollo-7", date(2024, 3, 15), 50)
    kinds = [None if i % 3 == 0 else v for i, v in enumerate(rows["sensor_kind"].to_pylist())]
    rows = rows.set_column(3, "sensor_kind", pa.array(kinds, pa.string()))
    path = f"{partition_path(table, 'apollo-7', date(2024, 3, 15))}/nulls.parquet"
    write_file(table, path, rows)
    with table.transaction() as tx, tx.update_snapshot(snapshot_properties=synth_lineage()).fast_append() as fa:
        fa.append_data_file(data_file_from_parquet(table.io, tx.table_metadata, path))


def sort_by_kind_then_payload(table: Any) -> None:
    """The table's sort order: sensor_kind ascending (nulls first), then payload_id descending (nulls last); and
    a file whose rows have null kinds."""
    with table.update_sort_order() as so:
        so.asc("sensor_kind", IdentityTransform(), NullOrder.NULLS_FIRST)
        so.desc("payload_id", IdentityTransform(), NullOrder.NULLS_LAST)
    _add_rows_with_null_kinds(table)
    table.refresh()


def _sort_key(row: dict[str, Any]) -> tuple[Any, ...]:
    kind = row["sensor_kind"]
    # sensor_kind ascending, nulls first; then payload_id descending, nulls last
    return (kind is not None, kind or "", -row["payload_id"])


def test_sort_orders_every_output_file_by_the_table_sort_order(ctx: JobContext) -> None:
    ctx = scaled(ctx, target_file_bytes=300_000)
    archive = make_archive(ctx)
    table = archive.table
    sort_by_kind_then_payload(table)
    sums = checksum(rows_of(table))
    result = compact(ctx)
    assert result.status == DONE
    table.refresh()
    order_id = table.sort_order().order_id
    outputs = [t.file for t in table.scan().plan_files()]
    assert len(outputs) == result.counts["files_out"] >= 3
    saw_null = False
    for df in outputs:
        assert df.sort_order_id == order_id
        with table.io.new_input(df.file_path).open() as f:
            rows = pq.read_table(f).to_pylist()
        assert rows == sorted(rows, key=_sort_key)
        saw_null |= any(r["sensor_kind"] is None for r in rows)
    assert saw_null
    assert checksum(rows_of(table)) == sums


def _mean_spans(table: Any, columns: list[str]) -> dict[str, float]:
    """Mean per-file span of each column over output files, as a fraction of the column's full range
    (strings measured by rank)."""
    per_file = []
    for df in (t.file for t in table.scan().plan_files()):
        with table.io.new_input(df.file_path).open() as f:
            per_file.append(pq.read_table(f, columns=columns))
    everything = pa.concat_tables(per_file)
    spans: dict[str, float] = {}
    for col in columns:
        values = everything[col]
        if pa.types.is_string(values.type) or pa.types.is_large_string(values.type):
            values = pc.rank(values, sort_keys="ascending", tiebreaker="dense")
        lo, hi = pc.min(values).as_py(), pc.max(values).as_py()
        offsets = [0]
        for t in per_file:
            offsets.append(offsets[-1] + t.num_rows)
        file_spans = []
        for i in range(len(per_file)):
            chunk = values.slice(offsets[i], offsets[i + 1] - offsets[i])
            file_spans.append((pc.max(chunk).as_py() - pc.min(chunk).as_py()) / (hi - lo))
        spans[col] = sum(file_spans) / len(file_spans)
    return spans


def test_zorder_keeps_each_column_tight_per_file(ctx: JobContext) -> None:
    ctx = scaled(ctx, target_file_bytes=64_000)
    archive = make_archive(ctx, files=36, file_bytes=(100_000, 150_000), **{
        "lifecycle.zorder-columns": "payload_id,sensor_kind", "lifecycle.compaction.max-group-bytes": "100000000"})
    sums = checksum(rows_of(archive.table))
    before = files_by_partition(archive.table)[A]
    baseline = _mean_spans(archive.table, ["payload_id", "sensor_kind"])
    assert min(baseline.values()) > 0.8  # random input: every small file spans almost everything
    result = compact(ctx)
    assert result.status == DONE
    assert len(files_by_partition(archive.table)[A]) == -(-sum(before.values()) // 64_000)
    spans = _mean_spans(archive.table, ["payload_id", "sensor_kind"])
    assert spans["payload_id"] < 0.30 and spans["sensor_kind"] < 0.30, spans
    assert checksum(rows_of(archive.table)) == sums
