"""Commit outcomes and the retry policy: how every job's commit is classified and retried.

An attempt ends one of three ways, and each job reacts the same way to each:

- landed: the catalog accepted it;
- conflict (`CommitConflictError`): the catalog or our validation refused it BEFORE its compare-and-swap
  (PyIceberg's `CommitFailedException` or `ValidationException`, the lineage gate's refusal, our own
  validation from the plan's base): nothing landed, so what this attempt staged may be removed;
- unknown (`CommitOutcomeUnknownError`): anything else (a timeout, a lost connection, a server error): the
  commit may have landed, so nothing staged is ever removed; the next run reconciles from the table itself
  (`lifecycle.safety.landed`).

`commit_with_retries` runs an attempt (refresh, validate from the plan's base, build, commit) until it
lands: a lost race (`CommitFailedException`: another commit moved the table) is retried after a jittered
exponential backoff, because an append by someone else is not a conflict for a rewrite; a real conflict
(`ValidationException`, `CommitConflictError`) ends it at once. Each retry is metadata work only: the data
files were written once and are never rewritten by a retry.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import TypeVar

from pyiceberg.exceptions import CommitFailedException, ValidationException

from lifecycle.errors import CommitConflictError, CommitOutcomeUnknownError

T = TypeVar("T")


class Outcome(StrEnum):
    LANDED = "landed"
    CONFLICT = "conflict"
    UNKNOWN = "unknown"


def classify(exc: BaseException) -> Outcome:
    """CONFLICT when the commit surely did not land, UNKNOWN otherwise."""
    if isinstance(exc, CommitFailedException | ValidationException | CommitConflictError):
        return Outcome.CONFLICT
    return Outcome.UNKNOWN


def as_commit_error(exc: BaseException, what: str) -> CommitConflictError | CommitOutcomeUnknownError:
    """The typed error for a failed attempt (see `classify`); the caller raises it `from exc`."""
    if isinstance(exc, CommitConflictError | CommitOutcomeUnknownError):
        return exc
    if classify(exc) is Outcome.CONFLICT:
        return CommitConflictError(f"{what}: {exc}")
    return CommitOutcomeUnknownError(f"{what}: commit outcome unknown: {type(exc).__name__}: {exc}")


@dataclass(frozen=True)
class RetryPolicy:
    attempts: int = 30            # attempts in all, the first included
    first_wait: float = 0.05      # seconds before the second attempt; doubles each time
    max_wait: float = 4.0
    deadline: float = 300.0       # seconds from the first attempt; no attempt starts after it


DEFAULT_POLICY = RetryPolicy()


def backoff(attempt: int, policy: RetryPolicy, rng: random.Random | None = None) -> float:
    """Seconds to wait after failed attempt number `attempt` (1-based): full jitter up to the cap."""
    cap = min(policy.max_wait, policy.first_wait * (2 ** (attempt - 1)))
    return (rng or random).uniform(cap / 2, cap)


def commit_with_retries(attempt: Callable[[int], T], what: str, policy: RetryPolicy = DEFAULT_POLICY,
                        on_retry: Callable[[int, BaseException], None] | None = None,
                        sleep: Callable[[float], None] = time.sleep) -> T:
    """Run `attempt(n)` until it returns. Lost races retry; a conflict or an unknown outcome is raised typed.

    Running out of attempts or time raises CommitConflictError: every attempt lost its race before its
    compare-and-swap, so nothing landed.
    """
    started = time.monotonic()
    n = 0
    while True:
        n += 1
        try:
            return attempt(n)
        except CommitFailedException as exc:
            if n >= policy.attempts or time.monotonic() - started >= policy.deadline:
                raise CommitConflictError(f"{what}: the table kept changing; {n} attempts in "
                                          f"{time.monotonic() - started:.0f} s lost their race ({exc})") from exc
            if on_retry is not None:
                on_retry(n, exc)
            sleep(backoff(n, policy))
        except BaseException as exc:
            if isinstance(exc, KeyboardInterrupt | SystemExit | GeneratorExit):
                raise
            raise as_commit_error(exc, what) from exc
