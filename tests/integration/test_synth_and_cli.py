"""The synthetic archive generator and the foundation's CLI surface."""

from __future__ import annotations

import json
import os
import time
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq

from lifecycle.clock import ManualClock, to_millis
from lifecycle.settings import Settings
from lifecycle_cli.synth import ArchiveSpec, OrphanSpec, build_archive
from tests.conftest import cli_env, run_cli, write_config


def test_generator_produces_what_was_asked(catalog: Any, clock: ManualClock) -> None:
    spec = ArchiveSpec(
        partitions=[("apollo-7", date(2024, 3, 15)), ("apollo-8", date(2024, 3, 16))],
        files_per_partition=[6, 3], file_bytes=(20_000, 60_000),
        history_snapshots=40, history_span_days=60, tags={"audit-1": 5, "audit-2": 30},
        orphans=[OrphanSpec(4, 10.0), OrphanSpec(2, 0.5, subdir="data/tmp")],
    )
    archive = build_archive(catalog, spec, clock)
    table = archive.table
    files = {t.file.file_path: t.file for t in table.scan().plan_files()}
    for part, paths in archive.data_files.items():
        assert len(paths) == (6 if "apollo-7" in part else 3)
        for p in paths:
            assert p in files
            assert 20_000 * 0.8 <= files[p].file_size_in_bytes <= 60_000 * 1.2
    # 40 history snapshots + one bulk append; timestamps spread over 60 days ending now
    snaps = table.metadata.snapshots
    assert len(snaps) == 41
    stamps = [s.timestamp_ms for s in snaps[:40]]
    assert stamps == sorted(stamps)
    assert stamps[0] == to_millis(clock.now() - timedelta(days=60))
    assert stamps[-1] <= to_millis(clock.now())
    assert len(table.metadata.snapshot_log) == 41
    assert {n: r.snapshot_id for n, r in table.metadata.refs.items() if n != "main"} == {
        "audit-1": archive.history_snapshot_ids[5], "audit-2": archive.history_snapshot_ids[30]}
    assert table.scan().to_arrow().num_rows == archive.rows
    # every data file carries Iceberg field ids
    some = next(iter(files))
    field_ids = [f.metadata.get(b"PARQUET:field_id") for f in pq.read_schema(some.removeprefix("file://"))]
    assert field_ids == [b"1", b"2", b"3", b"4", b"5"]
    ages = sorted(round((clock.now().timestamp() - os.stat(p.removeprefix("file://")).st_mtime) / 86400, 2)
                  for p, _ in archive.orphans)
    assert ages == [0.5, 0.5, 10.0, 10.0, 10.0, 10.0]
    assert all(p not in files for p, _ in archive.orphans)


def test_cli_help_lists_every_job_and_status_works(settings: Settings, tmp_path: Path) -> None:
    env = cli_env(write_config(tmp_path / "lifecycle.toml", settings))
    out = run_cli(["--help"], env)
    assert out.returncode == 0
    for job in ("compact", "expire", "purge", "clean-orphans", "rewrite-manifests", "compact-schema-history"):
        assert job in out.stdout
    up = run_cli(["db", "upgrade"], env)
    assert up.returncode == 0, up.stderr
    assert run_cli(["db", "upgrade"], env).stdout.strip() == "state database is up to date"
    status = run_cli(["status", "--json"], env)
    assert status.returncode == 0, status.stderr
    data = json.loads(status.stdout)
    assert data["plans_in_flight"] == [] and data["writers"] == []


def test_bad_input_exits_2_with_one_line(settings: Settings, tmp_path: Path) -> None:
    env = cli_env(write_config(tmp_path / "lifecycle.toml", settings))
    bad = tmp_path / "bad.toml"
    bad.write_text("[bandwidth]\nlifecycle_share = 0\n")
    cases = [
        (["status", "--table", "nope"], "unknown namespace 'archive'"),
        (["status", "--config", str(bad)], "bandwidth.lifecycle_share: must be in (0, 1]"),
        (["run", "defrag", "--table", "x"], "unknown job 'defrag'"),
        (["status", "--config", str(tmp_path / "missing.toml")], "cannot read"),
    ]
    for args, message in cases:
        started = time.monotonic()
        out = run_cli(args, env)
        assert out.returncode == 2, (args, out.stdout, out.stderr)
        lines = out.stderr.strip().splitlines()
        assert len(lines) == 1 and message in lines[0], (args, out.stderr)
        assert "Traceback" not in out.stderr
        assert time.monotonic() - started < 60


def test_pre_delete_checks_use_only_the_reference_decoders(catalog: Any, clock: ManualClock,
                                                            monkeypatch: Any) -> None:
    from lifecycle.expiration import purge
    from lifecycle.iceberg import reachability
    from lifecycle.safety.landed import LiveSets

    archive = build_archive(catalog, ArchiveSpec(files_per_partition=3, file_bytes=(20_000, 30_000),
                                                 history_snapshots=12), clock)
    table = archive.table
    light = reachability.live_set(table.io, table.metadata, table.metadata_location, reachability.ManifestCache())

    def broken(*_: object, **__: object) -> None:
        raise AssertionError("a light Avro reader was used for a pre-delete check")

    monkeypatch.setattr(reachability, "read_entries", broken)
    monkeypatch.setattr(reachability, "read_live_entries", broken)
    from lifecycle.orphans import plan as orphan_plan

    # purge and the orphan scan decide deletes from LiveSets, which reads with the reference decoders only
    assert purge.LiveSets is LiveSets and orphan_plan.LiveSets is LiveSets and LiveSets().cache.light is False
    reference = reachability.live_set(table.io, table.metadata, table.metadata_location,
                                      reachability.ManifestCache(light=False))
    assert reference == light
    assert all(p in reference for paths in archive.data_files.values() for p in paths)
