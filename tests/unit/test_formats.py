"""The one check of what PyIceberg can write: metadata-writing jobs refuse a table of a newer format."""

from __future__ import annotations

import pytest

from lifecycle.errors import UnsupportedFormatError
from lifecycle.jobs.base import JOB_NAMES
from lifecycle.jobs.formats import check_writable, writable_format_version
from lifecycle.jobs.registry import METADATA_WRITERS


def test_the_installed_pyiceberg_writes_format_2_at_most() -> None:
    assert writable_format_version() == 2


@pytest.mark.parametrize("job", sorted(METADATA_WRITERS))
def test_a_metadata_writer_refuses_a_format_3_table_in_one_line_naming_it(job: str) -> None:
    with pytest.raises(UnsupportedFormatError) as err:
        check_writable(job, "lake.events", 3)
    message = str(err.value)
    assert "\n" not in message
    assert message.startswith(f"{job} lake.events: refused: the table is format-version 3")
    assert err.value.exit_code == 1


@pytest.mark.parametrize("job", JOB_NAMES)
@pytest.mark.parametrize("version", [1, 2])
def test_every_job_runs_on_the_formats_pyiceberg_writes(job: str, version: int) -> None:
    check_writable(job, "lake.events", version)


@pytest.mark.parametrize("job", ["clean-orphans", "purge"])
def test_jobs_that_write_no_metadata_run_on_format_3(job: str) -> None:
    assert job not in METADATA_WRITERS
    check_writable(job, "lake.events", 3)
