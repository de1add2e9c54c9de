from __future__ import annotations

from pathlib import Path

import pytest

from lifecycle.errors import ConfigError
from lifecycle.settings import from_mapping, load


def test_defaults_match_the_design_contract() -> None:
    s = from_mapping({}, env={})
    assert s.catalog.name == "archive" and s.catalog.default_namespace == "archive"
    assert s.fleet.metrics_port == 9808
    assert s.bandwidth.object_store_bytes_per_second == 1_000_000_000
    assert s.bandwidth.bytes_per_second == pytest.approx(300_000_000)
    assert s.windows.compaction_paused == ("09:00-17:00",)
    assert s.windows.expiration_allowed == ("00:00-06:00",)
    assert s.cold_tier.storage_class == "GLACIER_IR"
    d = s.defaults
    assert (d.small_file_bytes, d.min_small_files, d.target_file_bytes) == (33554432, 50, 134217728)
    assert (d.retention_days, d.min_snapshots_to_keep, d.purge_delay_hours) == (30, 1, 24)
    assert (d.orphan_min_age_days, d.writer_heartbeat_ttl_seconds) == (7, 300)
    assert (d.manifest_target_bytes, d.metadata_log_max) == (8388608, 100)
    assert s.embedded_state


def test_per_table_override_inherits_defaults() -> None:
    s = from_mapping({
        "defaults": {"retention_days": 45, "min_small_files": 10},
        "tables": {"archive.sda_observations": {"retention_days": 90}},
    }, env={})
    t = s.for_table("archive.sda_observations")
    assert t.retention_days == 90
    assert t.min_small_files == 10  # from [defaults], not the built-in 50
    assert s.for_table("archive.other").retention_days == 45


def test_environment_urls_win_over_the_file() -> None:
    s = from_mapping({"state": {"database_url": "postgresql://file/db"}}, env={
        "LIFECYCLE_DATABASE_URL": "postgresql://env/db",
        "LIFECYCLE_BROKER_URL": "redis://env:6379/1",
        "LIFECYCLE_REDIS_URL": "redis://env:6379/2",
    })
    assert s.state.database_url == "postgresql://env/db"
    assert s.fleet.broker_url == "redis://env:6379/1"
    assert s.fleet.redis_url == "redis://env:6379/2"


def test_the_compaction_memory_budget_and_scratch_come_from_the_file_or_the_environment() -> None:
    s = from_mapping({"compaction": {"memory_budget_bytes": 2 << 30}}, env={})
    assert (s.compaction.memory_budget_bytes, s.compaction.scratch_dir) == (2 << 30, "")
    assert from_mapping({}, env={}).compaction.memory_budget_bytes == 1 << 30
    s = from_mapping({}, env={"LIFECYCLE_COMPACTION_MEMORY_BUDGET_BYTES": "1610612736",
                              "LIFECYCLE_COMPACTION_SCRATCH_DIR": "/var/lib/lifecycle/scratch"})
    assert (s.compaction.memory_budget_bytes, s.compaction.scratch_dir) == (1610612736, "/var/lib/lifecycle/scratch")
    with pytest.raises(ConfigError, match="LIFECYCLE_COMPACTION_MEMORY_BUDGET_BYTES: expected a whole number"):
        from_mapping({}, env={"LIFECYCLE_COMPACTION_MEMORY_BUDGET_BYTES": "1GiB"})


@pytest.mark.parametrize(("raw", "message"), [
    ({"bogus": {}}, "bogus: unknown key"),
    ({"fleet": {"metrics_prot": 1}}, "fleet.metrics_prot: unknown key"),
    ({"fleet": {"metrics_port": "9808"}}, "fleet.metrics_port: expected an integer"),
    ({"bandwidth": {"lifecycle_share": 0}}, "bandwidth.lifecycle_share: must be in (0, 1]"),
    ({"bandwidth": {"lifecycle_share": 1.5}}, "bandwidth.lifecycle_share: must be in (0, 1]"),
    ({"bandwidth": {"lifecycle_share": "30%"}}, "bandwidth.lifecycle_share: expected a number"),
    ({"windows": {"compaction_paused": ["9-17"]}}, "windows.compaction_paused: invalid window '9-17'"),
    ({"windows": {"expiration_allowed": ["25:00-06:00"]}}, "windows.expiration_allowed: invalid window"),
    ({"windows": {"expiration_allowed": "00:00-06:00"}}, "windows.expiration_allowed: expected a list"),
    ({"defaults": {"orphan_min_age_days": 0}}, "defaults.orphan_min_age_days: must be at least 1"),
    ({"defaults": {"min_snapshots_to_keep": 0}}, "defaults.min_snapshots_to_keep: must be at least 1"),
    ({"defaults": {"retention_days": -1}}, "defaults.retention_days: must be 0 or more"),
    ({"tables": {"archive.t": {"orphan_min_age_days": 0}}}, 'tables."archive.t".orphan_min_age_days'),
    ({"tables": {"archive.t": {"nope": 1}}}, 'tables."archive.t".nope: unknown key'),
    ({"tables": {"bare": {}}}, 'tables."bare": table names are "namespace.table"'),
    ({"compaction": {"memory_budget_bytes": 1000}}, "compaction.memory_budget_bytes: must be at least 16777216"),
    ({"compaction": {"scratch_dir": "/etc/hostname"}}, "compaction.scratch_dir: /etc/hostname exists and is not a"),
])
def test_invalid_settings_name_the_key(raw: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError) as err:
        from_mapping(raw, env={})
    assert message in str(err.value)
    assert "\n" not in str(err.value)


def test_load_order_and_file_errors(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert load(env={}).source == "embedded default"
    (tmp_path / "lifecycle.toml").write_text("[defaults]\nretention_days = 12\n")
    assert load(env={}).defaults.retention_days == 12
    other = tmp_path / "other.toml"
    other.write_text("[defaults]\nretention_days = 13\n")
    assert load(env={"LIFECYCLE_CONFIG": str(other)}).defaults.retention_days == 13
    assert load(str(other), env={}).defaults.retention_days == 13
    with pytest.raises(ConfigError, match="cannot read"):
        load(str(tmp_path / "missing.toml"), env={})
    bad = tmp_path / "bad.toml"
    bad.write_text("[defaults\n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load(str(bad), env={})
