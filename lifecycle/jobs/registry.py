"""Which function runs which job. Imported lazily so one job's module never loads another's."""

from __future__ import annotations

import importlib
from collections.abc import Callable

from lifecycle.errors import UnknownJobError
from lifecycle.jobs.base import JOB_NAMES, JobContext, JobRequest, JobResult

JobFn = Callable[[JobContext, JobRequest], JobResult]

_RUNNERS = {
    "compact": "lifecycle.compaction.job:run",
    "expire": "lifecycle.expiration.job:run_expire",
    "purge": "lifecycle.expiration.purge:run_purge",
    "clean-orphans": "lifecycle.orphans.job:run",
    "rewrite-manifests": "lifecycle.manifests.job:run",
    "compact-schema-history": "lifecycle.schema_history.job:run",
}

PARTITIONED_JOBS = frozenset({"compact"})

# Jobs that commit new table metadata (a snapshot, refs, schemas, manifests): they need PyIceberg to be able to
# write the table's format version (lifecycle.formats). clean-orphans and purge only read metadata.
METADATA_WRITERS = frozenset({"compact", "expire", "rewrite-manifests", "compact-schema-history"})


def check_job(name: str) -> str:
    if name not in JOB_NAMES:
        raise UnknownJobError(f"unknown job {name!r}; expected one of {', '.join(JOB_NAMES)}")
    return name


def writes_metadata(name: str) -> bool:
    return check_job(name) in METADATA_WRITERS


def runner(name: str) -> JobFn:
    module_name, attr = _RUNNERS[check_job(name)].split(":")
    module = importlib.import_module(module_name)
    fn: JobFn = getattr(module, attr)
    return fn
