"""The light Avro readers expiration planning relies on agree with PyIceberg's reference readers, and
refuse (return None, so the caller falls back) whatever they cannot read exactly."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pyiceberg.catalog.sql import SqlCatalog
from pyiceberg.io.pyarrow import PyArrowFileIO
from pyiceberg.manifest import (
    ManifestContent,
    ManifestFile,
    PartitionFieldSummary,
    read_manifest_list,
    write_manifest_list,
)
from pyiceberg.schema import Schema
from pyiceberg.types import LongType, NestedField, StringType

from lifecycle.iceberg import reachability
from lifecycle.iceberg.manifest_entries import read_live_entries
from lifecycle.iceberg.manifest_lists import read_entries


def _ref(path: str, length: int, spec_id: int, content: int) -> tuple[str, int, int, int]:
    return (path, length, spec_id, content)


def _write_list(tmp: Path, manifests: list[ManifestFile], version: int = 2) -> bytes:
    out = tmp / f"list-{random.random()}.avro"
    io = PyArrowFileIO()
    with write_manifest_list(format_version=version, output_file=io.new_output(f"file://{out}"), snapshot_id=1,
                             parent_snapshot_id=None, sequence_number=1, avro_compression="deflate") as w:
        w.add_manifests(manifests)
    return out.read_bytes()


def _manifest(path: str, length: int, spec_id: int, content: int, bound: bytes) -> ManifestFile:
    return ManifestFile.from_args(
        manifest_path=path, manifest_length=length, partition_spec_id=spec_id, content=ManifestContent(content),
        sequence_number=1, min_sequence_number=1, added_snapshot_id=1, added_files_count=1,
        existing_files_count=0, deleted_files_count=0, added_rows_count=1, existing_rows_count=0,
        deleted_rows_count=0,
        partitions=[PartitionFieldSummary.from_args(contains_null=False, contains_nan=False, lower_bound=bound,
                                                    upper_bound=bound)],
    )


@settings(max_examples=40, deadline=None)
@given(st.lists(st.tuples(st.integers(1, 300), st.integers(0, 2**40), st.integers(0, 5), st.integers(0, 1),
                          st.binary(max_size=40)), min_size=1, max_size=30))
def test_manifest_list_reader_matches_pyiceberg(tmp_path_factory: pytest.TempPathFactory,
                                                rows: list[tuple[int, int, int, int, bytes]]) -> None:
    tmp = tmp_path_factory.mktemp("lists")
    # path lengths cross the 1-/2-byte length-varint boundary (63/64 characters)
    manifests = [_manifest(f"s3://bucket/t/metadata/{'m' * n}-{i}.avro", length, spec, content, bound)
                 for i, (n, length, spec, content, bound) in enumerate(rows)]
    data = _write_list(tmp, manifests)
    got = read_entries(data, {}, _ref)
    want = [(m.manifest_path, m.manifest_length, m.partition_spec_id, int(m.content)) for m in manifests]
    assert got is None or got == want          # never a wrong answer
    if all(b"s3://" not in b for *_, b in rows):
        assert got == want                     # and an answer whenever no bound looks like a path


def test_manifest_list_reader_refuses_what_it_cannot_read_exactly(tmp_path: Path) -> None:
    odd = [_manifest("s3://b/t/metadata/a.avro", 1, 0, 0, b""),
           _manifest("gs://other/t/metadata/b.avro", 2, 0, 0, b"")]        # two schemes
    assert read_entries(_write_list(tmp_path, odd), {}, _ref) is None
    no_ext = [_manifest("s3://b/t/metadata/a.manifest", 1, 0, 0, b"")]
    assert read_entries(_write_list(tmp_path, no_ext), {}, _ref) is None
    v1 = [_manifest("s3://b/t/metadata/a.avro", 1, 0, 0, b"")]
    assert read_entries(_write_list(tmp_path, v1, version=1), {}, _ref) is None   # other field order
    assert read_entries(b"not avro at all", {}, _ref) is None
    assert read_live_entries(b"not avro at all") is None


def test_readers_agree_with_pyiceberg_on_a_real_table(tmp_path: Path) -> None:
    catalog = SqlCatalog("t", uri=f"sqlite:///{tmp_path / 'c.db'}", warehouse=f"file://{tmp_path / 'wh'}")
    catalog.create_namespace("ns")
    schema = Schema(NestedField(1, "id", LongType(), required=False), NestedField(2, "s", StringType(), required=False))
    table = catalog.create_table("ns.t", schema)
    arrow = pa.schema([pa.field("id", pa.int64()), pa.field("s", pa.string())])
    for i in range(4):
        table.append(pa.Table.from_pylist([{"id": i * 10 + j, "s": f"v{j}"} for j in range(5)], schema=arrow))
    table.delete("id < 15")
    table.overwrite(pa.Table.from_pylist([{"id": 99, "s": "x"}], schema=arrow))
    table = catalog.load_table("ns.t")
    checked = 0
    for snap in table.metadata.snapshots:
        refs = list(read_manifest_list(table.io.new_input(snap.manifest_list)))
        data = Path(snap.manifest_list.removeprefix("file://")).read_bytes()
        assert read_entries(data, {}, _ref) == [
            (m.manifest_path, m.manifest_length, m.partition_spec_id, int(m.content)) for m in refs]
        for m in refs:
            want = sorted((e.data_file.file_path, int(e.data_file.content), e.data_file.file_size_in_bytes,
                           e.data_file.record_count) for e in m.fetch_manifest_entry(table.io, discard_deleted=True))
            light = read_live_entries(Path(m.manifest_path.removeprefix("file://")).read_bytes())
            assert light is not None
            assert sorted((p, c, size, n) for _st, c, p, n, size in light) == want
            checked += 1
    assert checked >= 8
    # and reachable_from over the fast paths equals a walk with PyIceberg's own readers
    fast = reachability.reachable_from(table.io, table.metadata, table.metadata.snapshots,
                                       reachability.ManifestCache())
    slow_files = {e.data_file.file_path for s in table.metadata.snapshots
                  for m in read_manifest_list(table.io.new_input(s.manifest_list))
                  for e in m.fetch_manifest_entry(table.io, discard_deleted=True)}
    assert set(fast.data_files) | set(fast.delete_files) == slow_files


def _appended_table(tmp_path: Path, appends: int, delete_below: int | None = None) -> Any:
    """A one-column table with one fast append per row (and optionally a delete), freshly loaded."""
    catalog = SqlCatalog("t", uri=f"sqlite:///{tmp_path / 'c.db'}", warehouse=f"file://{tmp_path / 'wh'}")
    catalog.create_namespace("ns")
    table = catalog.create_table("ns.t", Schema(NestedField(1, "id", LongType(), required=False)))
    arrow = pa.schema([pa.field("id", pa.int64())])
    for i in range(appends):
        table.append(pa.Table.from_pylist([{"id": i}], schema=arrow))
    if delete_below is not None:
        table.delete(f"id < {delete_below}")
    return catalog.load_table("ns.t")


def test_persistent_cache_serves_a_fresh_process_without_reading_and_gives_the_same_answer(tmp_path: Path) -> None:
    from lifecycle.iceberg.reachability_cache import PersistentManifestCache

    table = _appended_table(tmp_path, 5, delete_below=2)
    snaps = table.metadata.snapshots
    want = reachability.reachable_from(table.io, table.metadata, snaps, reachability.ManifestCache())

    first = PersistentManifestCache(tmp_path / "cache.sqlite")
    assert reachability.reachable_from(table.io, table.metadata, snaps[:3], first).manifest_lists == {
        s.manifest_list for s in snaps[:3]}
    assert first.list_reads == 3
    second = PersistentManifestCache(tmp_path / "cache.sqlite")       # as a new process would
    got = reachability.reachable_from(table.io, table.metadata, snaps, second)
    assert second.list_reads == len(snaps) - 3                         # only what is new is read
    assert got.data_files == want.data_files and got.manifests == want.manifests
    assert got.manifest_lists == want.manifest_lists


def test_caches_keep_one_runs_working_set_in_memory_and_prune_rows_unused_for_thirty_days(tmp_path: Path) -> None:
    from lifecycle.iceberg.reachability_cache import MAX_AGE_DAYS, PersistentManifestCache

    table = _appended_table(tmp_path, 4)
    snaps = table.metadata.snapshots
    day = [1000]
    cache = PersistentManifestCache(tmp_path / "cache.sqlite", today=lambda: day[0])
    reachability.reachable_from(table.io, table.metadata, snaps, cache)        # run 1: all four snapshots
    assert cache.trim() == 0                                                   # everything was used
    reachability.reachable_from(table.io, table.metadata, snaps[2:], cache)    # run 2: two were expired
    assert cache.trim() == 2                                                   # their lists leave memory
    assert set(cache._lists) == {s.manifest_list for s in snaps[2:]}

    def rows(t: str) -> int:
        return int(cache._db.execute(f"SELECT count(*) FROM {t}").fetchone()[0])

    lists_before, manifests_before = rows("lists"), rows("manifests")
    assert lists_before == 4
    day[0] += MAX_AGE_DAYS                      # 30 days on, run 3 uses snapshots 2-3: nothing is old enough yet
    reachability.reachable_from(table.io, table.metadata, snaps[2:], cache)
    cache.trim()
    assert rows("lists") == 4
    day[0] += 1                                 # a day later the unused lists of snapshots 0-1 are pruned
    reachability.reachable_from(table.io, table.metadata, snaps[2:], cache)
    cache.trim()
    assert rows("lists") == 2
    assert rows("manifests") == manifests_before == 4   # fast appends: snapshot 3's list still names all four
    fresh = PersistentManifestCache(tmp_path / "cache.sqlite", today=lambda: day[0])   # a new process
    got = reachability.reachable_from(table.io, table.metadata, snaps, fresh)
    assert fresh.list_reads == 2                # the pruned ones are read again, the rest come from the file
    want = reachability.reachable_from(table.io, table.metadata, snaps, reachability.ManifestCache())
    assert got.data_files == want.data_files and got.manifest_lists == want.manifest_lists
