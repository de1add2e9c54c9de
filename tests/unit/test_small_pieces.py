from __future__ import annotations

from datetime import UTC, datetime

import pytest

from lifecycle.bandwidth import TokenBucket
from lifecycle.clock import ManualClock, default_clock
from lifecycle.errors import ConfigError
from lifecycle.jobs.specs import lock_kind
from lifecycle.log import mask
from lifecycle.state.locks import lock_key
from lifecycle.windows import parse_window


def test_windows_cross_midnight_and_bounds() -> None:
    day = parse_window("09:00-17:00", "k")
    assert day.contains(datetime(2026, 1, 1, 9, 0, tzinfo=UTC))
    assert day.contains(datetime(2026, 1, 1, 16, 59, tzinfo=UTC))
    assert not day.contains(datetime(2026, 1, 1, 17, 0, tzinfo=UTC))
    night = parse_window("22:00-02:00", "k")
    assert night.contains(datetime(2026, 1, 1, 23, 30, tzinfo=UTC))
    assert night.contains(datetime(2026, 1, 1, 1, 59, tzinfo=UTC))
    assert not night.contains(datetime(2026, 1, 1, 2, 0, tzinfo=UTC))
    with pytest.raises(ConfigError, match="start equals end"):
        parse_window("05:00-05:00", "k")


def test_token_bucket_charges_bytes_and_sleeps_off_debt() -> None:
    now = [0.0]
    slept: list[float] = []

    def sleep(s: float) -> None:
        slept.append(s)
        now[0] += s

    bucket = TokenBucket(rate=1000, burst=1000, monotonic=lambda: now[0], sleep=sleep)
    assert bucket.acquire(1000) == 0.0          # the burst
    assert bucket.acquire(500) == pytest.approx(0.5)
    now[0] += 2.0                                # refill is capped at the burst
    assert bucket.acquire(1000) == 0.0
    assert bucket.acquire(2000) == pytest.approx(2.0)
    assert bucket.charged_bytes == 4500
    # over 4.5 s of simulated time, 4500 bytes: exactly the rate after the initial burst
    assert now[0] == pytest.approx(4.5)


def test_passwords_are_masked() -> None:
    text = "connect postgresql://app:s3cr3t@db:5432/state and redis://:pw@r:6379/0 password=hunter2"
    masked = mask(text)
    assert "s3cr3t" not in masked and "hunter2" not in masked and ":pw@" not in masked
    assert "postgresql://app:***@db:5432/state" in masked


def test_lock_keys_are_stable_and_table_wide_jobs_share_one() -> None:
    assert lock_key("compact", "archive.t", "p=1") == lock_key("compact", "archive.t", "p=1")
    assert lock_key("compact", "archive.t", "p=1") != lock_key("compact", "archive.t", "p=2")
    assert -2**63 <= lock_key("x", "y") < 2**63
    assert lock_kind("expire") == lock_kind("clean-orphans") == lock_kind("compact-schema-history")
    assert lock_kind("compact") == "compact"


def test_fake_now_shifts_the_default_clock(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LIFECYCLE_FAKE_NOW", "2030-01-01T03:00:00+00:00")
    now = default_clock().now()
    assert now.year == 2030 and now.hour == 3
    clock = ManualClock(datetime(2026, 1, 1))
    assert clock.now().tzinfo is not None
