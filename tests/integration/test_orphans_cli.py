"""clean-orphans through the CLI: SIGKILL between delete batches then a rerun; invalid minimum age."""

from __future__ import annotations

import json
import signal
from pathlib import Path
from typing import Any

import pytest
from pyiceberg.catalog.sql import SqlCatalog

from lifecycle.clock import ManualClock
from lifecycle.settings import Settings
from lifecycle.state.store import StateStore
from tests.conftest import cli_env, pyiceberg_env, run_cli, s3_catalog_properties, write_config
from tests.integration.test_orphans_scenario import IDENT, all_files, build, read_table

BATCH = 4


@pytest.mark.parametrize("backend", ["local", "s3"])
def test_sigkill_mid_delete_then_rerun_finishes_without_touching_live_files(
    backend: str, request: Any, tmp_path: Path, settings: Settings, store: StateStore, clock: ManualClock,
    db_url: str,
) -> None:
    extra: dict[str, str] = {}
    if backend == "local":
        cat = request.getfixturevalue("catalog")
    else:
        props = s3_catalog_properties(tmp_path, request.getfixturevalue("moto_endpoint"),
                                      request.getfixturevalue("s3_bucket"))
        cat = SqlCatalog("archive", **props)
        extra = pyiceberg_env(props)
    sc = build(cat, clock, store, db_url, young_gap=6.0)
    before = set(all_files(sc.table))
    config = write_config(tmp_path / "lifecycle.toml", settings)
    env = cli_env(config, LIFECYCLE_FAKE_NOW=clock.now().isoformat(), LIFECYCLE_ORPHAN_BATCH_SIZE=str(BATCH),
                  **extra)

    dry = run_cli(["run", "clean-orphans", "--table", IDENT, "--dry-run", "--json"], env)
    assert dry.returncode == 0, dry.stderr
    plan = json.loads(dry.stdout)["plan"]
    assert {c["path"] for c in plan["candidates"]} == sc.expected_deleted
    assert plan["kept"]["active-writer"] == len(sc.kept["active-writer"])
    assert store.open_plans("clean-orphans") == [] and set(all_files(sc.table)) == before

    crashed = run_cli(["run", "clean-orphans", "--table", IDENT, "--json"],
                      {**env, "LIFECYCLE_CRASH_AT": "orphans.mid-delete:2"})
    assert crashed.returncode == -signal.SIGKILL, crashed.stderr
    journal = store.entries(kind="orphan")
    assert {e.path for e in journal} == sc.expected_deleted
    first = {e.path for e in journal if e.state == "deleted"}
    pending = {e.path for e in journal if e.state == "pending"}
    assert len(first) == 2 * BATCH and len(pending) == len(sc.expected_deleted) - 2 * BATCH
    mid = set(all_files(sc.table))
    assert mid == before - first, "exactly the journaled-deleted files are gone after the crash"
    assert sc.live <= mid

    rerun = run_cli(["run", "clean-orphans", "--table", IDENT, "--json"], env)
    assert rerun.returncode == 0, rerun.stderr
    out = json.loads(rerun.stdout)
    assert out["status"] == "done"
    assert out["counts"]["resumed_plans"] == 1
    assert out["counts"]["deleted"] == len(pending), "only what was still pending was deleted"
    assert out["counts"]["already_gone"] == 0, "nothing deleted twice"
    assert out["counts"]["candidates"] == 0
    journal = store.entries(kind="orphan")
    assert len(journal) == len(sc.expected_deleted), "no path journaled twice"
    assert {e.state for e in journal} == {"deleted"}
    assert store.open_plans("clean-orphans") == []
    after = set(all_files(sc.table))
    assert after == before - sc.expected_deleted
    assert read_table(sc.table) == (sc.rows, sc.checksum)


def test_min_age_zero_is_refused_with_exit_2(tmp_path: Path, settings: Settings, catalog: Any,
                                              clock: ManualClock) -> None:
    from lifecycle_cli.synth import ArchiveSpec, OrphanSpec, build_archive

    arch = build_archive(catalog, ArchiveSpec(files_per_partition=1, file_bytes=(2000, 3000),
                                              orphans=[OrphanSpec(2, 30)]), clock)
    config = write_config(tmp_path / "lifecycle.toml", settings, extra="[defaults]\norphan_min_age_days = 0\n")
    result = run_cli(["run", "clean-orphans", "--table", IDENT], cli_env(config))
    assert result.returncode == 2
    assert "orphan_min_age_days" in result.stderr and "at least 1" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert all(Path(p.removeprefix("file://")).exists() for p, _ in arch.orphans)
