"""The TOML configuration contract of design.md: defaults, per-table overrides, env overrides, validation."""

from __future__ import annotations

import dataclasses
import os
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lifecycle.errors import ConfigError
from lifecycle.windows import Window, parse_window


@dataclass(frozen=True)
class CatalogSettings:
    name: str = "archive"
    default_namespace: str = "archive"


@dataclass(frozen=True)
class StateSettings:
    database_url: str = ""
    data_dir: str = "lifecycle-data"  # the embedded default's local folder
    # finished job runs, finished plans and their journal rows older than this are pruned by the reaper
    history_retention_days: int = 90


@dataclass(frozen=True)
class FleetSettings:
    broker_url: str = ""
    redis_url: str = ""
    metrics_port: int = 9808
    # The largest clock difference between hosts the safety rules tolerate: a writer's heartbeat stamped by
    # its own clock, or a purge row's eligibility stamped by another worker, is judged with this margin, so
    # a host this far behind never loses a protection and a host this far ahead never deletes early. Quiet
    # windows use it too (beat's emission margin, a scheduled run's tolerance: lifecycle/windows.py).
    max_clock_skew_seconds: int = 300
    # poison partitions: a (job, table, partition) whose runs failed or died this many times in a row is
    # quarantined (skipped) until an operator releases it or the cool-off passes
    quarantine_after_failures: int = 5
    quarantine_cool_off_hours: int = 24


@dataclass(frozen=True)
class BandwidthSettings:
    object_store_bytes_per_second: int = 1_000_000_000
    lifecycle_share: float = 0.30

    @property
    def bytes_per_second(self) -> float:
        return self.object_store_bytes_per_second * self.lifecycle_share


@dataclass(frozen=True)
class WindowSettings:
    compaction_paused: tuple[str, ...] = ("09:00-17:00",)
    expiration_allowed: tuple[str, ...] = ("00:00-06:00",)

    def paused(self) -> tuple[Window, ...]:
        return tuple(parse_window(w, "windows.compaction_paused") for w in self.compaction_paused)

    def allowed(self) -> tuple[Window, ...]:
        return tuple(parse_window(w, "windows.expiration_allowed") for w in self.expiration_allowed)


@dataclass(frozen=True)
class ColdTierSettings:
    uri: str = ""
    storage_class: str = "GLACIER_IR"


@dataclass(frozen=True)
class OrphanSettings:
    # URI schemes treated as the same store when comparing listed files with the live set (e.g.
    # ["s3", "s3a", "s3n"]); empty: a scheme mismatch is an error (the safe default).
    equivalent_schemes: tuple[str, ...] = ()


@dataclass(frozen=True)
class CompactionSettings:
    commit_batch_max_groups: int = 50       # groups committed together in one replace snapshot at most
    commit_linger_seconds: float = 5.0      # a committer waits this long for sibling groups still rewriting
    memory_budget_bytes: int = 1 << 30      # decoded rows a sort or Z-order of one group may hold (per process)
    scratch_dir: str = ""                   # local folder for their spilled runs; empty: the system temp folder


@dataclass(frozen=True)
class TableSettings:
    small_file_bytes: int = 33_554_432
    min_small_files: int = 50
    target_file_bytes: int = 134_217_728
    retention_days: int = 30
    min_snapshots_to_keep: int = 1
    purge_delay_hours: int = 24
    orphan_min_age_days: int = 7
    writer_heartbeat_ttl_seconds: int = 300
    manifest_target_bytes: int = 8_388_608
    metadata_log_max: int = 100


@dataclass(frozen=True)
class Settings:
    catalog: CatalogSettings = field(default_factory=CatalogSettings)
    state: StateSettings = field(default_factory=StateSettings)
    fleet: FleetSettings = field(default_factory=FleetSettings)
    bandwidth: BandwidthSettings = field(default_factory=BandwidthSettings)
    windows: WindowSettings = field(default_factory=WindowSettings)
    cold_tier: ColdTierSettings = field(default_factory=ColdTierSettings)
    orphans: OrphanSettings = field(default_factory=OrphanSettings)
    compaction: CompactionSettings = field(default_factory=CompactionSettings)
    defaults: TableSettings = field(default_factory=TableSettings)
    tables: dict[str, TableSettings] = field(default_factory=dict)
    source: str = "embedded default"

    def for_table(self, identifier: str) -> TableSettings:
        return self.tables.get(identifier, self.defaults)

    @property
    def data_dir(self) -> Path:
        return Path(self.state.data_dir).resolve()

    @property
    def cold_tier_uri(self) -> str:
        return self.cold_tier.uri or str(self.data_dir / "cold")

    @property
    def embedded_state(self) -> bool:
        return not self.state.database_url

    def configured_tables(self) -> list[str]:
        return sorted(self.tables)


_SECTIONS: dict[str, type] = {
    "catalog": CatalogSettings,
    "state": StateSettings,
    "fleet": FleetSettings,
    "bandwidth": BandwidthSettings,
    "windows": WindowSettings,
    "cold_tier": ColdTierSettings,
    "orphans": OrphanSettings,
    "compaction": CompactionSettings,
    "defaults": TableSettings,
}

_ENV_OVERRIDES = {
    ("state", "database_url"): "LIFECYCLE_DATABASE_URL",
    ("fleet", "broker_url"): "LIFECYCLE_BROKER_URL",
    ("fleet", "redis_url"): "LIFECYCLE_REDIS_URL",
    ("compaction", "memory_budget_bytes"): "LIFECYCLE_COMPACTION_MEMORY_BUDGET_BYTES",
    ("compaction", "scratch_dir"): "LIFECYCLE_COMPACTION_SCRATCH_DIR",
}
MIN_MEMORY_BUDGET = 16 << 20


def _coerce(key: str, value: Any, default: Any) -> Any:
    if isinstance(default, bool):
        if not isinstance(value, bool):
            raise ConfigError(f"{key}: expected true or false, got {value!r}")
        return value
    if isinstance(default, int):
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{key}: expected an integer, got {value!r}")
        return value
    if isinstance(default, float):
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ConfigError(f"{key}: expected a number, got {value!r}")
        return float(value)
    if isinstance(default, str):
        if not isinstance(value, str):
            raise ConfigError(f"{key}: expected a string, got {value!r}")
        return value
    if isinstance(default, tuple):
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise ConfigError(f"{key}: expected a list of strings, got {value!r}")
        return tuple(value)
    raise ConfigError(f"{key}: unsupported value {value!r}")


def _build(section: str, cls: type, raw: Any, base: Any | None = None) -> Any:
    if not isinstance(raw, dict):
        raise ConfigError(f"{section}: expected a table, got {raw!r}")
    base = base if base is not None else cls()
    names = {f.name for f in dataclasses.fields(cls)}
    values: dict[str, Any] = {}
    for key, value in raw.items():
        if key not in names:
            raise ConfigError(f"{section}.{key}: unknown key")
        values[key] = _coerce(f"{section}.{key}", value, getattr(base, key))
    return dataclasses.replace(base, **values)


def _validate_table(prefix: str, t: TableSettings) -> None:
    positive = ("small_file_bytes", "min_small_files", "target_file_bytes", "manifest_target_bytes",
                "metadata_log_max", "writer_heartbeat_ttl_seconds")
    for name in positive:
        if getattr(t, name) <= 0:
            raise ConfigError(f"{prefix}.{name}: must be positive, got {getattr(t, name)}")
    if t.retention_days < 0:
        raise ConfigError(f"{prefix}.retention_days: must be 0 or more, got {t.retention_days}")
    if t.purge_delay_hours < 0:
        raise ConfigError(f"{prefix}.purge_delay_hours: must be 0 or more, got {t.purge_delay_hours}")
    if t.min_snapshots_to_keep < 1:
        raise ConfigError(f"{prefix}.min_snapshots_to_keep: must be at least 1, got {t.min_snapshots_to_keep}")
    if t.orphan_min_age_days < 1:
        raise ConfigError(f"{prefix}.orphan_min_age_days: must be at least 1 (the floor), got {t.orphan_min_age_days}")


def _validate(s: Settings) -> None:
    share = s.bandwidth.lifecycle_share
    if not 0 < share <= 1:
        raise ConfigError(f"bandwidth.lifecycle_share: must be in (0, 1], got {share}")
    if s.bandwidth.object_store_bytes_per_second <= 0:
        raise ConfigError("bandwidth.object_store_bytes_per_second: must be positive")
    if not 0 < s.fleet.metrics_port < 65536:
        raise ConfigError(f"fleet.metrics_port: not a port: {s.fleet.metrics_port}")
    if s.fleet.max_clock_skew_seconds < 0:
        raise ConfigError(f"fleet.max_clock_skew_seconds: must be 0 or more, got {s.fleet.max_clock_skew_seconds}")
    for key in ("quarantine_after_failures", "quarantine_cool_off_hours"):
        if getattr(s.fleet, key) < 1:
            raise ConfigError(f"fleet.{key}: must be at least 1, got {getattr(s.fleet, key)}")
    if s.state.history_retention_days < 1:
        raise ConfigError(f"state.history_retention_days: must be at least 1, got {s.state.history_retention_days}")
    if s.compaction.commit_batch_max_groups < 1:
        raise ConfigError("compaction.commit_batch_max_groups: must be at least 1,"
                          f" got {s.compaction.commit_batch_max_groups}")
    if s.compaction.commit_linger_seconds < 0:
        raise ConfigError("compaction.commit_linger_seconds: must be 0 or more,"
                          f" got {s.compaction.commit_linger_seconds}")
    if s.compaction.memory_budget_bytes < MIN_MEMORY_BUDGET:
        raise ConfigError(f"compaction.memory_budget_bytes: must be at least {MIN_MEMORY_BUDGET} (16 MiB),"
                          f" got {s.compaction.memory_budget_bytes}")
    scratch = s.compaction.scratch_dir
    if scratch and Path(scratch).exists() and not Path(scratch).is_dir():
        raise ConfigError(f"compaction.scratch_dir: {scratch} exists and is not a folder")
    s.windows.paused()
    s.windows.allowed()
    _validate_table("defaults", s.defaults)
    for name, t in s.tables.items():
        _validate_table(f'tables."{name}"', t)
    if not s.catalog.name:
        raise ConfigError("catalog.name: must not be empty")


def from_mapping(raw: dict[str, Any], source: str = "<mapping>", env: dict[str, str] | None = None) -> Settings:
    """Build and validate settings from a parsed TOML mapping."""
    env = dict(os.environ) if env is None else env
    sections: dict[str, Any] = {}
    tables: dict[str, TableSettings] = {}
    for key, value in raw.items():
        if key == "tables":
            if not isinstance(value, dict):
                raise ConfigError("tables: expected a table of tables")
            continue
        if key not in _SECTIONS:
            raise ConfigError(f"{key}: unknown key")
        sections[key] = _build(key, _SECTIONS[key], value)
    defaults = sections.get("defaults", TableSettings())
    for name, override in raw.get("tables", {}).items():
        if "." not in name:
            raise ConfigError(f'tables."{name}": table names are "namespace.table"')
        tables[name] = _build(f'tables."{name}"', TableSettings, override, base=defaults)
    for (section, key), var in _ENV_OVERRIDES.items():
        if env.get(var):
            base = sections.get(section, _SECTIONS[section]())
            raw_env: Any = env[var]
            if isinstance(getattr(base, key), int):
                if not raw_env.strip().isdigit():
                    raise ConfigError(f"{var}: expected a whole number, got {raw_env!r}")
                raw_env = int(raw_env)
            sections[section] = dataclasses.replace(base, **{key: raw_env})
    settings = Settings(**sections, tables=tables, source=source)
    _validate(settings)
    return settings


def load(path: str | os.PathLike[str] | None = None, env: dict[str, str] | None = None) -> Settings:
    """--config PATH, else LIFECYCLE_CONFIG, else ./lifecycle.toml if present, else the embedded default."""
    env = dict(os.environ) if env is None else env
    chosen = str(path) if path else env.get("LIFECYCLE_CONFIG") or None
    if chosen is None and Path("lifecycle.toml").is_file():
        chosen = "lifecycle.toml"
    if chosen is None:
        return from_mapping({}, source="embedded default", env=env)
    p = Path(chosen)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"config {chosen}: cannot read ({exc.strerror or exc})") from None
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config {chosen}: not valid TOML ({exc})") from None
    return from_mapping(raw, source=str(p), env=env)
