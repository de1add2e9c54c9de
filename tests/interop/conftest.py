"""The interop tier: Apache Iceberg Java (Spark) and this product on the same tables. One JVM per test session;
each test its own PostgreSQL database (catalog and state) and warehouse. Installed by scripts/interop-setup;
skipped, with the reason, only where there is no Java."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.interop import toolchain
from tests.interop.lake import Lake


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    here = Path(__file__).parent
    for item in items:
        if here in Path(str(item.fspath)).parents:
            item.add_marker(pytest.mark.interop)


@pytest.fixture(scope="session")
def spark_root() -> Iterator[Any]:
    why = toolchain.missing()
    if why is not None and toolchain.java() is None:
        pytest.skip(why)
    if why is not None:
        pytest.fail(why)  # Java is here, so the tier must run: install it rather than skip
    from tests.interop import spark

    session = spark.start()
    yield session
    session.stop()


@pytest.fixture
def lake(spark_root: Any, db_url: str, tmp_path: Path) -> Iterator[Lake]:
    lk = Lake(spark_root, db_url, tmp_path)
    yield lk
    lk.close()
