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


def _env(var: str, default: Any) -> Any:
    """A key the environment variable `var` overrides, declared on the field itself (ENV_OVERRIDES below)."""
    return field(default=default, metadata={"env": var})


@dataclass(frozen=True)
class CatalogSettings:
    """`[catalog]`: which PyIceberg catalog, and the namespace of unqualified table names."""

    name: str = "archive"
    default_namespace: str = "archive"


@dataclass(frozen=True)
class StateSettings:
    """`[state]`: the state database and the local data folder."""

    database_url: str = _env("LIFECYCLE_DATABASE_URL", "")
    data_dir: str = "lifecycle-data"  # the embedded default's local folder
    # finished job runs, finished plans and their journal rows older than this are pruned by the reaper
    history_retention_days: int = 90


@dataclass(frozen=True)
class FleetSettings:
    """`[fleet]`: the broker, Redis, metrics and the timing every process of the fleet must agree on."""

    broker_url: str = _env("LIFECYCLE_BROKER_URL", "")
    redis_url: str = _env("LIFECYCLE_REDIS_URL", "")
    metrics_port: int = _env("LIFECYCLE_METRICS_PORT", 9808)
    # The largest clock difference between hosts the safety rules tolerate: a writer's heartbeat stamped by
    # its own clock, or a purge row's eligibility stamped by another worker, is judged with this margin, so
    # a host this far behind never loses a protection and a host this far ahead never deletes early. Quiet
    # windows use it too (beat's emission margin, a scheduled run's tolerance: lifecycle/windows.py).
    max_clock_skew_seconds: int = 300
    # poison partitions: a (job, table, partition) whose runs failed or died this many times in a row is
    # quarantined (skipped) until an operator releases it or the cool-off passes
    quarantine_after_failures: int = 5
    quarantine_cool_off_hours: int = 24
    # The broker redelivers an unacknowledged message after the visibility timeout, so every task must finish
    # (hard time limit) well before it; 0 for a limit: 90 % (hard) and 80 % (soft) of the timeout.
    visibility_timeout_seconds: float = _env("LIFECYCLE_VISIBILITY_TIMEOUT", 21_600.0)
    task_time_limit_seconds: float = _env("LIFECYCLE_TASK_TIME_LIMIT", 0.0)
    task_soft_time_limit_seconds: float = _env("LIFECYCLE_TASK_SOFT_TIME_LIMIT", 0.0)
    # how often a running job refreshes its run's heartbeat; a run silent for run_stale_seconds, its lock
    # free, is re-sent by the reaper
    run_heartbeat_seconds: float = _env("LIFECYCLE_RUN_HEARTBEAT_SECONDS", 15.0)
    run_stale_seconds: float = _env("LIFECYCLE_RUN_STALE_SECONDS", 300.0)

    def task_limits(self) -> tuple[float, float, float]:
        """(soft, hard, visibility timeout) in seconds; unset limits are 80 % and 90 % of the timeout."""
        visibility = self.visibility_timeout_seconds
        hard = self.task_time_limit_seconds or visibility * 0.9
        soft = self.task_soft_time_limit_seconds or min(visibility * 0.8, hard * 0.9)
        return soft, hard, visibility


@dataclass(frozen=True)
class BandwidthSettings:
    """`[bandwidth]`: the object store's capacity and the share the fleet may use."""

    object_store_bytes_per_second: int = 1_000_000_000
    lifecycle_share: float = 0.30

    @property
    def bytes_per_second(self) -> float:
        return self.object_store_bytes_per_second * self.lifecycle_share


@dataclass(frozen=True)
class WindowSettings:
    """`[windows]`: quiet windows (UTC)."""

    compaction_paused: tuple[str, ...] = ("09:00-17:00",)
    expiration_allowed: tuple[str, ...] = ("00:00-06:00",)

    def paused(self) -> tuple[Window, ...]:
        return tuple(parse_window(w, "windows.compaction_paused") for w in self.compaction_paused)

    def allowed(self) -> tuple[Window, ...]:
        return tuple(parse_window(w, "windows.expiration_allowed") for w in self.expiration_allowed)


@dataclass(frozen=True)
class ColdTierSettings:
    """`[cold_tier]`: where purge copies files before deleting them."""

    uri: str = ""
    storage_class: str = "GLACIER_IR"

    def location(self, data_dir: Path) -> str:
        """`uri`, or the embedded default's folder `<data_dir>/cold`."""
        return self.uri or str(data_dir / "cold")


@dataclass(frozen=True)
class OrphanSettings:
    """`[orphans]`: clean-orphans."""

    # URI schemes treated as the same store when comparing listed files with the live set (e.g.
    # ["s3", "s3a", "s3n"]); empty: a scheme mismatch is an error (the safe default).
    equivalent_schemes: tuple[str, ...] = ()
    # journal rows deleted per batch (one checkpoint per batch)
    delete_batch_size: int = _env("LIFECYCLE_ORPHAN_BATCH_SIZE", 1000)


@dataclass(frozen=True)
class CompactionSettings:
    """`[compaction]`: the batched per-table commit, and the memory and scratch of sort and Z-order rewrites."""

    commit_batch_max_groups: int = 50       # groups committed together in one replace snapshot at most
    commit_linger_seconds: float = 5.0      # a committer waits this long for sibling groups still rewriting
    # decoded rows a sort or Z-order of one group may hold (per process); larger groups spill to scratch_dir
    memory_budget_bytes: int = _env("LIFECYCLE_COMPACTION_MEMORY_BUDGET_BYTES", 1 << 30)
    scratch_dir: str = _env("LIFECYCLE_COMPACTION_SCRATCH_DIR", "")   # empty: the system temp folder


@dataclass(frozen=True)
class TableSettings:
    """`[defaults]` and each `[tables."ns.table"]` (docs/configuration.md has the validation of each)."""

    small_file_bytes: int = 33_554_432
    """a data file below this is small (compaction's input)"""
    min_small_files: int = 50
    """a partition with at least this many small files is compacted"""
    target_file_bytes: int = 134_217_728
    """the size compaction writes"""
    retention_days: int = 30
    """snapshots older than this expire (refs and min_snapshots_to_keep permitting)"""
    min_snapshots_to_keep: int = 1
    """the newest snapshots of each branch kept whatever their age"""
    purge_delay_hours: int = 24
    """expire's files are purged no earlier than this after its commit"""
    orphan_min_age_days: int = 7
    """clean-orphans never deletes a file younger than this (7 is the floor)"""
    writer_heartbeat_ttl_seconds: int = 300
    """a writer whose heartbeat is older than this is no longer active"""
    manifest_target_bytes: int = 8_388_608
    """rewrite-manifests writes manifests of about this size"""
    metadata_log_max: int = 100
    """compact-schema-history keeps this many entries of the metadata log"""


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
        return self.cold_tier.location(self.data_dir)

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

MIN_MEMORY_BUDGET = 16 << 20
# Every LIFECYCLE_* environment variable, declared in this module and documented in docs/configuration.md (a test checks
# both, and that no other module reads a variable that overrides a key). A variable that overrides a key wins
# over the file when set and not empty, parsed as the key's type ("VARIABLE: expected ..." otherwise).
ENV_OVERRIDES: dict[tuple[str, str], str] = {
    (section, f.name): f.metadata["env"]
    for section, cls in _SECTIONS.items() for f in dataclasses.fields(cls) if "env" in f.metadata
}
# Variables with no key: the identity, secret or wiring of one process (a pod, a CLI run), read where used.
PROCESS_ENV: dict[str, str] = {
    "LIFECYCLE_CONFIG": "which configuration file is read",
    "LIFECYCLE_FLEET_SECRET": "the fleet secret (lifecycle/fleet/signing.py); never in the file",
    "LIFECYCLE_WORKER_ID": "the name recorded in job_runs.worker",
    "LIFECYCLE_COMMIT_HASH": "the VCS hash of the install, in the lineage fields of the fleet's commits",
    "LIFECYCLE_COMPACTION_THREADS": "output files a compaction writes at once (this pod's CPUs)",
    "LIFECYCLE_NICE": "CPU niceness of the worker pool children",
    "LIFECYCLE_IONICE_IDLE": "1: idle IO class for the worker pool children",
    "LIFECYCLE_LOG_LEVEL": "level of the workers' JSON log events",
    "LIFECYCLE_METRICS_ADDR": "address the worker's /metrics listens on",
    "LIFECYCLE_HEARTBEAT_FILE": "the liveness file the probe checks (the manifests' probe reads it too)",
    "LIFECYCLE_HEARTBEAT_SECONDS": "how often the liveness file is touched",
    "LIFECYCLE_SHUTDOWN_FILE": "the warm-shutdown marker the worker hands to its pool children",
    "LIFECYCLE_FAKE_NOW": "tests and the demo: this process's clock starts at this time",
    "LIFECYCLE_CRASH_AT": "tests: SIGKILL this process at a named crash point",
    "LIFECYCLE_CRASH_ONCE": "tests: a marker file; only the first process to reach the crash point dies",
    "LIFECYCLE_DEBUG": "the CLI shows a traceback instead of the one-line error",
    "LIFECYCLE_DEMO_JOB_TIMEOUT": "seconds the demo waits for a job's runs",
}


def _from_env(var: str, raw: str, default: Any) -> Any:
    """An override's text as the type of the key's default."""
    try:
        if isinstance(default, bool):
            raise ValueError
        if isinstance(default, int):
            return int(raw)
        if isinstance(default, float):
            return float(raw)
    except ValueError:
        kind = "a whole number" if isinstance(default, int) else "a number"
        raise ConfigError(f"{var}: expected {kind}, got {raw!r}") from None
    return raw


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


def _validate_fleet_timing(f: FleetSettings) -> None:
    for key in ("run_heartbeat_seconds", "run_stale_seconds", "visibility_timeout_seconds"):
        if getattr(f, key) <= 0:
            raise ConfigError(f"fleet.{key}: must be positive, got {getattr(f, key)}")
    if f.run_stale_seconds <= f.run_heartbeat_seconds:
        raise ConfigError(f"fleet.run_stale_seconds: must exceed fleet.run_heartbeat_seconds"
                          f" ({f.run_heartbeat_seconds}), got {f.run_stale_seconds}")
    soft, hard, visibility = f.task_limits()
    if not 0 < soft < hard < visibility:
        raise ConfigError("fleet.task_time_limit_seconds: task time limits must satisfy soft < hard < visibility"
                          f" timeout, got {soft} / {hard} / {visibility}")


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
    _validate_fleet_timing(s.fleet)
    if s.orphans.delete_batch_size < 1:
        raise ConfigError(f"orphans.delete_batch_size: must be at least 1, got {s.orphans.delete_batch_size}")
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
    overridden: dict[str, str] = {}
    for (section, key), var in ENV_OVERRIDES.items():
        if env.get(var):
            base = sections.get(section, _SECTIONS[section]())
            sections[section] = dataclasses.replace(base, **{key: _from_env(var, env[var], getattr(base, key))})
            overridden[f"{section}.{key}"] = var
    settings = Settings(**sections, tables=tables, source=source)
    try:
        _validate(settings)
    except ConfigError as exc:   # name the variable when the bad value came from one
        named = next((v for k, v in overridden.items() if str(exc).startswith(f"{k}:")), None)
        if named is None:
            raise
        raise ConfigError(f"{named}: {exc}") from None
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
