"""One local Spark (Apache Iceberg Java) per test session, and per test a fresh SparkSession whose Iceberg JDBC
catalog points at that test's PostgreSQL database: the same catalog PyIceberg's SqlCatalog reads.

Catalog interop rules (both sides must agree):
- the catalog name is stored in every catalog row: Spark's catalog and PyIceberg's are both `archive`;
- `jdbc.schema-version=V1`: the layout PyIceberg 0.12 creates (with `iceberg_type`);
- `cache-enabled=false`: Spark's CachingCatalog would keep serving a table's snapshot from before our commits.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

from tests.interop import toolchain

CATALOG = "archive"

_LOG4J = """\
rootLogger.level = error
rootLogger.appenderRef.stderr.ref = stderr
appender.console.type = Console
appender.console.name = stderr
appender.console.target = SYSTEM_ERR
appender.console.layout.type = PatternLayout
appender.console.layout.pattern = %d{HH:mm:ss} %p %c{1}: %m%n%ex
"""


def _log4j_file() -> Path:
    path = toolchain.home() / "log4j2.properties"
    if not path.exists() or path.read_text() != _LOG4J:
        path.write_text(_LOG4J)
    return path


def start(driver_memory: str = "2g") -> Any:
    """The process's SparkContext (local[2]) with Iceberg's SQL extensions; catalogs are set per session."""
    toolchain.activate()
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    os.environ["SPARK_LOCAL_IP"] = "127.0.0.1"
    from pyspark.sql import SparkSession

    conf = {
        "spark.master": "local[2]",
        "spark.app.name": "lifecycle-interop",
        "spark.driver.memory": driver_memory,
        "spark.driver.extraClassPath": os.pathsep.join(toolchain.classpath()),
        "spark.driver.extraJavaOptions": f"-Dlog4j2.configurationFile=file:{_log4j_file()} -XX:+UseSerialGC",
        "spark.driver.host": "127.0.0.1",
        "spark.driver.bindAddress": "127.0.0.1",
        "spark.ui.enabled": "false",
        "spark.ui.showConsoleProgress": "false",
        "spark.sql.catalogImplementation": "in-memory",
        "spark.sql.extensions": "org.apache.iceberg.spark.extensions.IcebergSparkSessionExtensions",
        "spark.sql.shuffle.partitions": "2",
        "spark.default.parallelism": "2",
        "spark.sql.session.timeZone": "UTC",
    }
    builder = SparkSession.builder
    for key, value in conf.items():
        builder = builder.config(key, value)
    spark = builder.getOrCreate()
    spark.sparkContext.setLogLevel("ERROR")
    return spark


def catalog_conf(pg_host: str, pg_port: int, database: str, user: str, warehouse: Path) -> dict[str, str]:
    key = f"spark.sql.catalog.{CATALOG}"
    return {
        key: "org.apache.iceberg.spark.SparkCatalog",
        f"{key}.type": "jdbc",
        f"{key}.uri": f"jdbc:postgresql://{pg_host}:{pg_port}/{database}",
        f"{key}.jdbc.user": user,
        f"{key}.jdbc.schema-version": "V1",
        f"{key}.cache-enabled": "false",
        f"{key}.warehouse": warehouse.resolve().as_uri(),
    }


def session_for(root: Any, conf: dict[str, str]) -> Any:
    """A new SparkSession on the running context: its own SQL conf, so its own catalog instances."""
    spark = root.newSession()
    for key, value in conf.items():
        spark.conf.set(key, value)
    return spark
