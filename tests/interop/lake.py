"""One test's lake, seen from both sides: Spark (Apache Iceberg Java) and our CLI (PyIceberg's SqlCatalog),
on the same JDBC catalog in the test's own PostgreSQL database, with a warehouse under the test's tmp folder."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import time
import urllib.parse
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from pyiceberg.catalog.sql import SqlCatalog

from lifecycle.settings import Settings
from tests.conftest import cli_env, make_settings, pyiceberg_env, run_cli, with_table_settings, write_config
from tests.interop import spark as spark_mod

COLUMNS = "id BIGINT, mission STRING, day DATE, value DOUBLE, note STRING"
ROWS_SQL = ("SELECT id, concat('m', CAST(id % 3 AS STRING)) AS mission, "
            "date_add(DATE'2024-01-01', CAST(id % 4 AS INT)) AS day, id / 8.0 AS value, "
            "sha1(CAST(id AS STRING)) AS note FROM range({lo}, {hi})")


def norm(path: str) -> str:
    """A local file's path whatever its spelling (`file:/x`, `file:///x`, `/x`)."""
    return os.path.normpath(urllib.parse.urlsplit(path).path if path.startswith("file:") else path)


def ts_literal(when: datetime) -> str:
    return f"TIMESTAMP '{when.astimezone(UTC):%Y-%m-%d %H:%M:%S.%f}'"


class Lake:
    def __init__(self, root_spark: Any, db_url: str, tmp_path: Path) -> None:
        url = urllib.parse.urlsplit(db_url)
        self.db_url = db_url
        self.warehouse = tmp_path / "warehouse"
        self.warehouse.mkdir()
        self.spark = spark_mod.session_for(root_spark, spark_mod.catalog_conf(
            url.hostname or "127.0.0.1", url.port or 5432, url.path.lstrip("/"), url.username or "postgres",
            self.warehouse))
        self.catalog_props = {"type": "sql", "uri": db_url.replace("postgresql://", "postgresql+psycopg://", 1),
                              "warehouse": self.warehouse.resolve().as_uri()}
        self.catalog = SqlCatalog(spark_mod.CATALOG, **self.catalog_props)
        self.settings: Settings = make_settings(tmp_path / "data", db_url)
        self.config = tmp_path / "lifecycle.toml"
        write_config(self.config, self.settings)

    def close(self) -> None:
        self.catalog.engine.dispose()

    # -------------------------------------------------------------------------------- our side
    def configure(self, table: str, **values: Any) -> None:
        self.settings = with_table_settings(self.settings, table, **values)
        write_config(self.config, self.settings)

    def cli(self, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
        return run_cli(list(args), cli_env(self.config, **pyiceberg_env(self.catalog_props), **env))

    def run(self, job: str, table: str, *args: str, **env: str) -> dict[str, Any]:
        """`lifecycle-cli run JOB --table T --json`, which must succeed."""
        out = self.cli("run", job, "--table", table, "--json", *args, **env)
        assert out.returncode == 0, f"{job} {table} exited {out.returncode}: {out.stderr[-2000:]}"
        result: dict[str, Any] = json.loads(out.stdout)
        return result

    def our_orphans(self, table: str) -> set[str]:
        plan = self.run("clean-orphans", table, "--dry-run")["plan"]
        return {norm(c["path"]) for c in plan["candidates"]}

    def py_rows(self, table: str, snapshot_id: int | None = None) -> list[tuple[Any, ...]]:
        arrow = self.catalog.load_table(table).scan(snapshot_id=snapshot_id).to_arrow()
        return sorted(tuple(r.values()) for r in arrow.to_pylist())

    # -------------------------------------------------------------------------------- Spark's side
    def sql(self, query: str) -> list[Any]:
        return list(self.spark.sql(query).collect())

    def rows(self, table: str, version: str | None = None) -> list[tuple[Any, ...]]:
        """Every row Spark reads from the table (at a tag or branch when `version` is given)."""
        suffix = f" VERSION AS OF '{version}'" if version else ""
        return sorted(tuple(r) for r in self.sql(f"SELECT * FROM {spark_mod.CATALOG}.{table}{suffix}"))

    def insert(self, table: str, lo: int, hi: int, target: str | None = None) -> None:
        self.sql(f"INSERT INTO {spark_mod.CATALOG}.{target or table} " + ROWS_SQL.format(lo=lo, hi=hi))

    def create(self, table: str, partitioned_by: str = "mission", format_version: int = 2,
               columns: str = COLUMNS, **props: str) -> None:
        namespace = table.split(".")[0]
        self.sql(f"CREATE NAMESPACE IF NOT EXISTS {spark_mod.CATALOG}.{namespace}")
        properties = {"format-version": str(format_version), "write.delete.mode": "merge-on-read",
                      "write.update.mode": "merge-on-read", "write.merge.mode": "merge-on-read", **props}
        tblprops = ", ".join(f"'{k}'='{v}'" for k, v in properties.items())
        part = f" PARTITIONED BY ({partitioned_by})" if partitioned_by else ""
        self.sql(f"CREATE TABLE {spark_mod.CATALOG}.{table} ({columns}) USING iceberg{part} TBLPROPERTIES ({tblprops})")

    def java_orphans(self, table: str, older_than: datetime) -> set[str]:
        """Iceberg's own `remove_orphan_files`, dry run (the procedure refuses a cutoff within 24 hours)."""
        got = self.sql(f"CALL {spark_mod.CATALOG}.system.remove_orphan_files(table => '{table}', "
                       f"older_than => {ts_literal(older_than)}, dry_run => true)")
        return {norm(r[0]) for r in got}

    def metadata_view(self, table: str) -> dict[str, Any]:
        """What Iceberg's metadata tables say about the table's current state."""
        t = f"{spark_mod.CATALOG}.{table}"
        return {
            "files": sorted(norm(r[0]) for r in self.sql(f"SELECT file_path FROM {t}.files")),
            "manifests": sorted(norm(r[0]) for r in self.sql(f"SELECT path FROM {t}.manifests")),
            "snapshots": sorted(r[0] for r in self.sql(f"SELECT snapshot_id FROM {t}.snapshots")),
            "refs": sorted((r[0], r[1], r[2]) for r in self.sql(f"SELECT name, type, snapshot_id FROM {t}.refs")),
        }

    def pyiceberg_view(self, table: str) -> dict[str, Any]:
        """The same, from PyIceberg's reading of the same metadata."""
        tbl = self.catalog.load_table(table)
        snap = tbl.current_snapshot()
        manifests = snap.manifests(tbl.io) if snap else []
        files = [norm(e.data_file.file_path) for m in manifests for e in m.fetch_manifest_entry(tbl.io)]
        return {
            "files": sorted(files),
            "manifests": sorted(norm(m.manifest_path) for m in manifests),
            "snapshots": sorted(s.snapshot_id for s in tbl.metadata.snapshots),
            "refs": sorted((name, ref.snapshot_ref_type.value.upper(), ref.snapshot_id)
                           for name, ref in tbl.metadata.refs.items()),
        }

    # -------------------------------------------------------------------------------- files
    def root(self, table: str) -> Path:
        return Path(norm(self.catalog.load_table(table).location()))

    def all_files(self, table: str) -> set[str]:
        return {os.path.normpath(os.path.join(d, f)) for d, _, fs in os.walk(self.root(table)) for f in fs}

    def age_all(self, table: str, days: float) -> None:
        """Every file under the table location modified `days` ago (both scans only consider old files)."""
        when = time.time() - days * 86400
        for path in self.all_files(table):
            os.utime(path, (when, when))

    def plant(self, table: str, rel: str, days: float = 10) -> str:
        path = self.root(table) / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(os.urandom(64))
        when = time.time() - days * 86400
        os.utime(path, (when, when))
        return os.path.normpath(path)


def cutoff_days_ago(days: float) -> datetime:
    return datetime.now(UTC) - timedelta(days=days)


def replace_settings(lake: Lake, **values: Any) -> None:
    lake.settings = dataclasses.replace(lake.settings, **values)
    write_config(lake.config, lake.settings)
