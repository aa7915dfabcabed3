"""Circuit-breaker state in Redis, shared by every replica.

One hash per breaker (``{prefix}circuit:{key}``) holds the state, the open time, the probe
counters and the window's buckets (``s:<bucket>`` / ``f:<bucket>`` counts); a set
(``{prefix}circuits``) lists the keys so the admin API can show every circuit any replica has
used. Each transition is one Lua script (atomic in Redis), implementing exactly the rules of
:class:`oneflow_ai.resilience.breaker_state.BreakerCore`; the shared behaviour suite runs against
both.
Time comes from the caller (Unix seconds), so replicas need roughly synchronized clocks (NTP;
skew of milliseconds is irrelevant next to cool-downs of seconds). Hashes expire a day after
their last use.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from oneflow_ai.resilience.breaker_state import (
    Admission,
    BreakerConfig,
    BreakerSnapshot,
    CircuitState,
    Outcome,
)

if TYPE_CHECKING:  # redis-py is imported only when REDIS_URL is set
    from redis.asyncio import Redis

__all__ = ["RedisBreakerStore"]

_TTL_MS = 24 * 3600 * 1000

# Shared helpers, prepended to both scripts.
_HELPERS = """
local function clear_window(key)
  local fields = redis.call('HKEYS', key)
  for _, field in ipairs(fields) do
    local p = string.sub(field, 1, 2)
    if p == 's:' or p == 'f:' then redis.call('HDEL', key, field) end
  end
end
local function open_circuit(key, now)
  redis.call('HSET', key, 'st', 'open', 'oa', now, 'pr', 0, 'ps', 0)
  redis.call('HINCRBY', key, 'to', 1)
  clear_window(key)
end
local function close_circuit(key)
  redis.call('HSET', key, 'st', 'closed', 'pr', 0, 'ps', 0)
  clear_window(key)
end
"""

# KEYS: breaker hash, registry set.
# ARGV: now, cooldown, probe_timeout, half_open_probes, ttl_ms, name
_ACQUIRE = (
    _HELPERS
    + """
local key = KEYS[1]
local now = tonumber(ARGV[1])
local st = redis.call('HGET', key, 'st') or 'closed'
local admission = 'allowed'
if st == 'open' then
  local oa = tonumber(redis.call('HGET', key, 'oa') or '0')
  if now < oa + tonumber(ARGV[2]) then
    admission = 'rejected'
  else
    st = 'half_open'
    redis.call('HSET', key, 'st', 'half_open', 'pr', 0, 'ps', 0)
  end
end
if st == 'half_open' then
  local pr = tonumber(redis.call('HGET', key, 'pr') or '0')
  local ps = tonumber(redis.call('HGET', key, 'ps') or '0')
  local pa = tonumber(redis.call('HGET', key, 'pa') or '0')
  if pr > 0 and now - pa >= tonumber(ARGV[3]) then pr = 0 end
  if pr + ps < tonumber(ARGV[4]) then
    pr = pr + 1
    redis.call('HSET', key, 'pr', pr, 'pa', ARGV[1])
    admission = 'probe'
  else
    redis.call('HSET', key, 'pr', pr)
    admission = 'rejected'
  end
end
redis.call('PEXPIRE', key, ARGV[5])
redis.call('SADD', KEYS[2], ARGV[6])
return {admission, redis.call('HGETALL', key)}
"""
)

# KEYS: breaker hash, registry set.
# ARGV: now, successes, failures, probe ('' | success | failure | neutral), failure_rate,
#       min_calls, bucket_width, buckets, half_open_probes, ttl_ms, name
_RECORD = (
    _HELPERS
    + """
local key = KEYS[1]
local now = tonumber(ARGV[1])
local probe = ARGV[4]
local st = redis.call('HGET', key, 'st') or 'closed'
if probe ~= '' and st == 'half_open' then
  local pr = tonumber(redis.call('HGET', key, 'pr') or '0')
  if pr > 0 then pr = pr - 1 end
  redis.call('HSET', key, 'pr', pr, 'pa', ARGV[1])
  if probe == 'success' then
    local ps = redis.call('HINCRBY', key, 'ps', 1)
    if ps >= tonumber(ARGV[9]) then
      close_circuit(key)
      st = 'closed'
    end
  elseif probe == 'failure' then
    open_circuit(key, ARGV[1])
    st = 'open'
  end
end
local s = tonumber(ARGV[2])
local f = tonumber(ARGV[3])
if (s > 0 or f > 0) and st == 'closed' then
  local current = math.floor(now / tonumber(ARGV[7]))
  if s > 0 then redis.call('HINCRBY', key, 's:' .. current, s) end
  if f > 0 then
    redis.call('HINCRBY', key, 'f:' .. current, f)
    local oldest = current - tonumber(ARGV[8]) + 1
    local ts, tf = 0, 0
    local all = redis.call('HGETALL', key)
    for i = 1, #all, 2 do
      local field = all[i]
      local p = string.sub(field, 1, 2)
      if p == 's:' or p == 'f:' then
        local bucket = tonumber(string.sub(field, 3))
        if bucket < oldest then
          redis.call('HDEL', key, field)
        elseif p == 's:' then
          ts = ts + tonumber(all[i + 1])
        else
          tf = tf + tonumber(all[i + 1])
        end
      end
    end
    local calls = ts + tf
    if calls >= tonumber(ARGV[6]) and tf >= tonumber(ARGV[5]) * calls then
      open_circuit(key, ARGV[1])
    end
  end
end
redis.call('HSETNX', key, 'st', 'closed')
redis.call('PEXPIRE', key, ARGV[10])
redis.call('SADD', KEYS[2], ARGV[11])
return redis.call('HGETALL', key)
"""
)


class RedisBreakerStore:
    """Breaker state shared through Redis (atomic Lua scripts; see the module docstring)."""

    shared = True

    def __init__(self, redis: Redis, *, prefix: str = "oneflow:") -> None:
        self._redis = redis
        self._prefix = prefix
        self._registry = f"{prefix}circuits"
        self._acquire = redis.register_script(_ACQUIRE)
        self._record = redis.register_script(_RECORD)

    def _hash(self, key: str) -> str:
        return f"{self._prefix}circuit:{key}"

    async def acquire(
        self, key: str, config: BreakerConfig, now: float
    ) -> tuple[Admission, BreakerSnapshot]:
        admission, fields = await self._acquire(
            keys=[self._hash(key), self._registry],
            args=[
                repr(now),
                repr(config.cooldown_seconds),
                repr(config.probe_timeout_seconds),
                config.half_open_probes,
                _TTL_MS,
                key,
            ],
        )
        snapshot = _snapshot(key, _pairs(fields), config, now)
        return Admission(_text(admission)), snapshot

    async def record(
        self,
        key: str,
        config: BreakerConfig,
        now: float,
        *,
        successes: int = 0,
        failures: int = 0,
        probe: Outcome | None = None,
    ) -> BreakerSnapshot:
        fields = await self._record(
            keys=[self._hash(key), self._registry],
            args=[
                repr(now),
                successes,
                failures,
                "" if probe is None else probe.value,
                repr(config.failure_rate),
                config.min_calls,
                repr(config.bucket_width),
                config.buckets,
                config.half_open_probes,
                _TTL_MS,
                key,
            ],
        )
        return _snapshot(key, _pairs(fields), config, now)

    async def load(
        self, keys: list[str] | None, config_for: Callable[[str], BreakerConfig], now: float
    ) -> list[BreakerSnapshot]:
        if keys is None:
            members = await self._redis.smembers(self._registry)
            keys = sorted(_text(m) for m in members)
        if not keys:
            return []
        async with self._redis.pipeline(transaction=False) as pipe:
            for key in keys:
                pipe.hgetall(self._hash(key))
            results = await pipe.execute()
        snapshots = []
        for key, raw in zip(keys, results, strict=True):
            fields = {_text(k): _text(v) for k, v in raw.items()}
            snapshots.append(_snapshot(key, fields, config_for(key), now))
        return snapshots

    async def reset(self, key: str) -> None:
        await self._redis.delete(self._hash(key))


def _text(value: object) -> str:
    if isinstance(value, bytes):
        return value.decode()
    return str(value)


def _pairs(flat: list[object]) -> dict[str, str]:
    return {_text(flat[i]): _text(flat[i + 1]) for i in range(0, len(flat) - 1, 2)}


def _snapshot(
    key: str, fields: dict[str, str], config: BreakerConfig, now: float
) -> BreakerSnapshot:
    state = CircuitState(fields.get("st", "closed"))
    successes = failures = 0
    if state is CircuitState.CLOSED:
        oldest = config.bucket_of(now) - config.buckets + 1
        for field, value in fields.items():
            kind, _, bucket = field.partition(":")
            if kind in ("s", "f") and bucket and int(bucket) >= oldest:
                if kind == "s":
                    successes += int(value)
                else:
                    failures += int(value)
    opened_at = float(fields["oa"]) if "oa" in fields and state is not CircuitState.CLOSED else None
    return BreakerSnapshot(
        key=key,
        state=state,
        successes=successes,
        failures=failures,
        opened_at=opened_at,
        retry_at=(
            opened_at + config.cooldown_seconds
            if state is CircuitState.OPEN and opened_at is not None
            else None
        ),
        probes_in_flight=int(fields.get("pr", 0)),
        probe_successes=int(fields.get("ps", 0)),
        times_opened=int(fields.get("to", 0)),
    )
