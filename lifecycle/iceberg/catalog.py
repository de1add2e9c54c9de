"""Catalog access: the PyIceberg catalog named in settings, table resolution with clear errors."""

from __future__ import annotations

from typing import Any

from pyiceberg.catalog import Catalog, load_catalog
from pyiceberg.exceptions import NoSuchNamespaceError, NoSuchTableError
from pyiceberg.table import Table
from pyiceberg.utils.config import Config

from lifecycle import log
from lifecycle.errors import ConfigError, UnknownTableError
from lifecycle.settings import Settings

_log = log.get("lifecycle.iceberg.catalog")


def embedded_properties(settings: Settings) -> dict[str, str]:
    """The embedded default: a SQLite catalog beside a file warehouse under the data folder."""
    data = settings.data_dir
    (data / "warehouse").mkdir(parents=True, exist_ok=True)
    return {
        "type": "sql",
        "uri": f"sqlite:///{data / 'catalog.db'}",
        "warehouse": f"file://{data / 'warehouse'}",
    }


def catalog_properties(settings: Settings) -> dict[str, Any]:
    """PyIceberg's own configuration for the named catalog (.pyiceberg.yaml, PYICEBERG_CATALOG__...),
    or the embedded default when none is configured."""
    conf = Config().get_catalog_config(settings.catalog.name)
    if conf:
        return dict(conf)
    return embedded_properties(settings)


def open_catalog(settings: Settings, **overrides: Any) -> Catalog:
    props = catalog_properties(settings)
    props.update(overrides)
    try:
        return load_catalog(settings.catalog.name, **props)
    except (ValueError, ImportError) as exc:
        raise ConfigError(f"catalog.name: cannot load PyIceberg catalog {settings.catalog.name!r}: {exc}") from None


def qualify(settings: Settings, name: str) -> str:
    """`namespace.table`, or a bare name in the configured default namespace."""
    name = name.strip()
    if not name or name.startswith(".") or name.endswith("."):
        raise UnknownTableError(f"table {name!r}: expected 'namespace.table' or a bare table name")
    return name if "." in name else f"{settings.catalog.default_namespace}.{name}"


def resolve_table(catalog: Catalog, settings: Settings, name: str) -> tuple[str, Table]:
    identifier = qualify(settings, name)
    namespace = identifier.rsplit(".", 1)[0]
    try:
        return identifier, catalog.load_table(identifier)
    except NoSuchNamespaceError:
        raise UnknownTableError(f"unknown namespace {namespace!r} (table {identifier})") from None
    except NoSuchTableError:
        if not _namespace_exists(catalog, namespace):
            raise UnknownTableError(f"unknown namespace {namespace!r} (table {identifier})") from None
        raise UnknownTableError(f"unknown table {identifier!r}") from None


def _namespace_exists(catalog: Catalog, namespace: str) -> bool:
    try:
        catalog.load_namespace_properties(namespace)
        return True
    except NoSuchNamespaceError:
        return False


def all_tables(catalog: Catalog, settings: Settings) -> list[str]:
    """Every table to run on when no --table is given: the configured tables, else every table in the
    default namespace."""
    configured = settings.configured_tables()
    if configured:
        return configured
    try:
        return sorted(".".join(t) for t in catalog.list_tables(settings.catalog.default_namespace))
    except NoSuchNamespaceError:
        return []
