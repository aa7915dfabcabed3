"""The shared window store: one Lua script per check, atomic across every replica.

The script reads the clock of the Redis server (`TIME`), so replicas with skewed clocks agree;
it checks every bucket of a request and charges them all, or none, in one round trip. A bucket is
a hash of at most 60 slice counters that expires with its window. (On Redis Cluster, every key
of one call must share a hash slot; OneFlow targets a single primary, with or without replicas.)
"""

from __future__ import annotations

from collections.abc import Sequence

from redis.asyncio import Redis

from oneflow_ai.limits.window import SLICES, Bucket, BucketResult

__all__ = ["RedisWindowStore"]

_SCRIPT = """
local check = ARGV[1] == '1'
local slices = tonumber(ARGV[2])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local admitted = true
local staged = {}
for i = 1, #KEYS do
  local base = 2 + (i - 1) * 3
  local limit = tonumber(ARGV[base + 1])
  local window = tonumber(ARGV[base + 2])
  local cost = tonumber(ARGV[base + 3])
  local width = math.floor(window / slices)
  local current = math.floor(now / width)
  local horizon = current - slices
  local raw = redis.call('HGETALL', KEYS[i])
  local live = {}
  local stale = {}
  local used = 0
  for j = 1, #raw, 2 do
    local index = tonumber(raw[j])
    if index <= horizon then
      stale[#stale + 1] = raw[j]
    else
      local count = tonumber(raw[j + 1])
      used = used + count
      live[#live + 1] = {index, count}
    end
  end
  if #stale > 0 then
    redis.call('HDEL', KEYS[i], unpack(stale))
  end
  table.sort(live, function(a, b) return a[1] < b[1] end)
  local allowed = 1
  local retry = 0
  if check and used + cost > limit then
    allowed = 0
    admitted = false
    retry = window
    if cost <= limit then
      local need = used + cost - limit
      local freed = 0
      for _, slice in ipairs(live) do
        freed = freed + slice[2]
        if freed >= need then
          retry = math.max(1, (slice[1] + slices) * width - now)
          break
        end
      end
    end
  end
  local oldest = nil
  if #live > 0 then oldest = live[1][1] end
  staged[i] = {window, cost, width, current, used, allowed, retry, oldest}
end
local out = {admitted and 1 or 0}
for i = 1, #KEYS do
  local s = staged[i]
  local used = s[5]
  local oldest = s[8]
  if admitted and s[2] > 0 then
    redis.call('HINCRBY', KEYS[i], string.format('%d', s[4]), s[2])
    redis.call('PEXPIRE', KEYS[i], s[1] + s[3])
    used = used + s[2]
    if oldest == nil then oldest = s[4] end
  end
  local reset = 0
  if oldest ~= nil then reset = math.max(0, (oldest + slices) * s[3] - now) end
  out[#out + 1] = s[6]
  out[#out + 1] = used
  out[#out + 1] = s[7]
  out[#out + 1] = reset
end
return out
"""


class RedisWindowStore:
    def __init__(self, redis: Redis) -> None:
        self._redis = redis
        self._script = redis.register_script(_SCRIPT)

    async def hit(self, buckets: Sequence[Bucket], *, check: bool = True) -> list[BucketResult]:
        if not buckets:
            return []
        args: list[int | str] = ["1" if check else "0", SLICES]
        for bucket in buckets:
            args.extend((bucket.limit, bucket.window_ms, bucket.cost))
        # `Script` runs EVALSHA and loads the script once if the server does not know it.
        raw = await self._script(keys=[b.key for b in buckets], args=args)
        values = [int(v) for v in raw]
        return [
            BucketResult(
                allowed=bool(values[1 + 4 * i]),
                used=values[2 + 4 * i],
                retry_after_ms=values[3 + 4 * i],
                reset_ms=values[4 + 4 * i],
            )
            for i in range(len(buckets))
        ]

    async def close(self) -> None:
        """The Redis client belongs to the process's services, which close it."""
