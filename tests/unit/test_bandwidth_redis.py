"""The Redis token bucket's Lua logic (fakeredis runs the script; the fleet test uses a real Redis)."""

from __future__ import annotations

import fakeredis
import pytest

from lifecycle.fleet.bandwidth_redis import RedisTokenBucket, fleet_limiter
from lifecycle.settings import from_mapping


@pytest.fixture
def client() -> fakeredis.FakeRedis:
    return fakeredis.FakeRedis()


def bucket(client: fakeredis.FakeRedis, rate: float, burst: float | None = None, key: str = "bw") -> RedisTokenBucket:
    return RedisTokenBucket(client, rate, burst, key=key, sleep=lambda s: None)


def test_a_full_bucket_lets_one_burst_through_then_charges_debt(client: fakeredis.FakeRedis) -> None:
    b = bucket(client, rate=1_000_000)
    assert b.acquire(1_000_000) == 0.0
    wait = b.acquire(500_000)
    assert 0.45 < wait <= 0.5
    assert 0.95 < b.acquire(500_000) <= 1.0     # debts accumulate: the second caller waits behind the first
    assert b.charged_bytes == 2_000_000


def test_processes_sharing_a_key_share_the_budget(client: fakeredis.FakeRedis) -> None:
    a, b = bucket(client, rate=100_000), bucket(client, rate=100_000)
    assert a.acquire(100_000) == 0.0
    assert b.acquire(50_000) > 0.4               # b pays for a's burst
    other = bucket(client, rate=100_000, key="another-fleet")
    assert other.acquire(100_000) == 0.0


def test_nothing_to_move_costs_nothing(client: fakeredis.FakeRedis) -> None:
    b = bucket(client, rate=10)
    assert b.acquire(0) == 0.0
    assert b.acquire(-5) == 0.0
    assert b.acquire(10) == 0.0                  # the burst is still full


def test_a_smaller_burst_caps_what_may_pass_at_once(client: fakeredis.FakeRedis) -> None:
    b = bucket(client, rate=1_000_000, burst=100_000)
    assert b.acquire(100_000) == 0.0
    assert b.acquire(100_000) > 0.09


def test_the_bucket_state_expires_when_idle(client: fakeredis.FakeRedis) -> None:
    b = bucket(client, rate=1_000_000)
    b.acquire(10)
    assert 0 < client.pttl("bw") <= 61_000 + 1000


def test_rate_must_be_positive(client: fakeredis.FakeRedis) -> None:
    with pytest.raises(ValueError, match="positive"):
        RedisTokenBucket(client, 0)


def test_fleet_limiter_follows_the_configured_share() -> None:
    assert fleet_limiter(from_mapping({}, env={})) is None
    s = from_mapping({"fleet": {"redis_url": "redis://127.0.0.1:1/0"},
                      "bandwidth": {"object_store_bytes_per_second": 2_000_000, "lifecycle_share": 0.25}}, env={})
    limiter = fleet_limiter(s)
    assert limiter is not None and limiter.rate == 500_000
    broker_only = from_mapping({"fleet": {"broker_url": "redis://127.0.0.1:1/3"}}, env={})
    limiter = fleet_limiter(broker_only)                     # never one bucket per process behind a shared broker
    assert limiter is not None and limiter.rate == 300_000_000
