"""The fleet-wide bandwidth budget: one token bucket in Redis that every worker process shares.

A Lua script refills the bucket from Redis's own clock (`TIME`, so worker clocks never matter), charges the
request in bytes and returns how long the caller must wait: the bucket may go into debt, which the caller
sleeps off before moving its bytes. Over any interval T the fleet moves at most `burst + rate × T` bytes, and
with enough demand it moves exactly `rate × T` on average.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from lifecycle import metrics
from lifecycle.bandwidth import ReservingLimiter
from lifecycle.settings import Settings

# KEYS[1] bucket hash; ARGV: rate (bytes/s), burst (bytes), nbytes. Returns the wait in seconds (string).
# The timestamp is kept in integer microseconds (exact in a double), formatted without exponent.
ACQUIRE_LUA = """
local rate = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local n = tonumber(ARGV[3])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local state = redis.call('HMGET', KEYS[1], 'tokens', 'ts')
local tokens = tonumber(state[1])
local ts = tonumber(state[2])
if tokens == nil or ts == nil then
  tokens = burst
  ts = now
end
local elapsed = now - ts
if elapsed < 0 then elapsed = 0 end
tokens = math.min(burst, tokens + elapsed * rate / 1000000)
tokens = tokens - n
redis.call('HSET', KEYS[1], 'tokens', string.format('%.3f', tokens), 'ts', string.format('%.0f', now))
local debt_seconds = 0
if tokens < 0 then debt_seconds = -tokens / rate end
redis.call('PEXPIRE', KEYS[1], math.floor((debt_seconds + burst / rate) * 1000) + 60000)
return string.format('%.6f', debt_seconds)
"""

DEFAULT_KEY = "lifecycle:bandwidth"


class RedisTokenBucket(ReservingLimiter):
    """`Limiter` over a Redis token bucket shared by every process using the same key."""

    def __init__(self, client: Any, rate: float, burst: float | None = None, key: str = DEFAULT_KEY,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        if rate <= 0:
            raise ValueError("rate must be positive")
        super().__init__(sleep)
        self.client = client
        self.rate = float(rate)
        self.burst = float(burst if burst is not None else rate)
        self.key = key
        self._script = client.register_script(ACQUIRE_LUA)
        self.charged_bytes = 0

    def _reserve(self, nbytes: int) -> float:
        """Charge nbytes now; return the seconds to wait before moving them (no sleeping)."""
        raw = self._script(keys=[self.key], args=[repr(self.rate), repr(self.burst), int(nbytes)])
        self.charged_bytes += nbytes
        return float(raw.decode() if isinstance(raw, bytes) else raw)



def fleet_limiter(settings: Settings) -> RedisTokenBucket | None:
    """The shared bucket in `fleet.redis_url` (LIFECYCLE_REDIS_URL wins), else in a Redis broker's server
    (N workers with N in-process buckets would move N times the budget), else None (the in-process bucket)."""
    url = settings.fleet.redis_url
    if not url and settings.fleet.broker_url.startswith(("redis://", "rediss://", "redis+socket://")):
        url = settings.fleet.broker_url
    if not url:
        return None
    import redis

    client = redis.Redis.from_url(url, socket_timeout=10, socket_connect_timeout=10, health_check_interval=30)
    metrics.BANDWIDTH_BUDGET.set(settings.bandwidth.bytes_per_second)
    return RedisTokenBucket(client, settings.bandwidth.bytes_per_second)
