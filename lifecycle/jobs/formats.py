"""What the installed PyIceberg can write, checked once before a job runs (from `lifecycle.jobs.runtime.execute`).

PyIceberg reads tables of a newer format than it writes (0.12 reads format 3, deletion vectors included, but
cannot write a format-3 manifest, manifest list or metadata update). A job that commits metadata (compact,
expire, rewrite-manifests, compact-schema-history) on such a table would fail at its commit, after rewriting
data; it is refused up front instead, with one line naming the table and the reason, nothing planned or
written. Jobs that only read metadata and delete files (clean-orphans, purge) run on any format PyIceberg reads.
"""

from __future__ import annotations

import pyiceberg
from pyiceberg.table import metadata as _metadata

from lifecycle.errors import UnsupportedFormatError
from lifecycle.jobs.base import JobContext, JobRequest
from lifecycle.jobs.registry import writes_metadata


def writable_format_version() -> int:
    """The highest table format version the installed PyIceberg writes (its own upgrade limit)."""
    return int(getattr(_metadata, "SUPPORTED_TABLE_FORMAT_VERSION", 2))


def check_writable(job: str, table: str, format_version: int) -> None:
    """UnsupportedFormatError (exit 1) if `job` would have to write metadata PyIceberg cannot write."""
    highest = writable_format_version()
    if not writes_metadata(job) or format_version <= highest:
        return
    raise UnsupportedFormatError(
        f"{job} {table}: refused: the table is format-version {format_version} and the installed PyIceberg "
        f"{pyiceberg.__version__} writes format-version {highest} at most; {job} commits metadata, so nothing "
        "was planned or rewritten (clean-orphans and purge still run on this table)"
    )


def check_request(ctx: JobContext, request: JobRequest) -> None:
    if writes_metadata(request.job):
        check_writable(request.job, request.table, ctx.catalog.load_table(request.table).metadata.format_version)
