"""Which function runs which job (from the job registry, lifecycle/jobs/specs.py). Imported lazily so one job's
module never loads another's."""

from __future__ import annotations

import importlib
from collections.abc import Callable

from lifecycle.jobs.base import JobContext, JobRequest, JobResult
from lifecycle.jobs.specs import METADATA_WRITERS as METADATA_WRITERS
from lifecycle.jobs.specs import PARTITIONED_JOBS as PARTITIONED_JOBS
from lifecycle.jobs.specs import spec

JobFn = Callable[[JobContext, JobRequest], JobResult]

def check_job(name: str) -> str:
    return spec(name).name


def writes_metadata(name: str) -> bool:
    return spec(name).writes_metadata


def runner(name: str) -> JobFn:
    module_name, attr = spec(name).runner.split(":")
    module = importlib.import_module(module_name)
    fn: JobFn = getattr(module, attr)
    return fn
