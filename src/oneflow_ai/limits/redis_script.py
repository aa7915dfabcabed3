"""The window script: the Lua that checks and charges the windows of one request in Redis,
atomically, and the keys and arguments of one call of it (`limits/redis_store.py` sends it)."""

from __future__ import annotations

from collections.abc import Sequence

from oneflow_ai.limits.shares import CEILING_PERCENT, MAX_TTL, Return
from oneflow_ai.limits.window import SLICES, Bucket

__all__ = ["SCRIPT", "STRIDE", "Call", "call"]

#: ARGV: check ('1' or '0'), slices, how many of the first buckets are debts (charged, unchecked,
#: as they are read: before the others are), the share ceiling (percent of the limit) and a
#: share's longest life (ms), then limit, window, cost and one more value per bucket: for a debt
#: the slice to charge (-1: the current one; a negative cost there gives unused units back, never
#: below zero and only while the slice is in the window), for a checked bucket the share asked.
#: The answer: admitted, then per bucket that is no debt: allowed, used, retry, reset, and the
#: share granted, the slice it was charged to and its life in ms (see `limits/shares.py`).
SCRIPT = """
local check = ARGV[1] == '1'
local slices = tonumber(ARGV[2])
local owed = tonumber(ARGV[3])
local ceiling = tonumber(ARGV[4])
local longest = tonumber(ARGV[5])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local admitted = true
local staged = {}
for i = 1, #KEYS do
  local base = 5 + (i - 1) * 4
  local limit = tonumber(ARGV[base + 1])
  local window = tonumber(ARGV[base + 2])
  local cost = tonumber(ARGV[base + 3])
  local extra = tonumber(ARGV[base + 4])
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
  if i <= owed then
    if cost > 0 then
      redis.call('HINCRBY', KEYS[i], string.format('%d', current), cost)
      redis.call('PEXPIRE', KEYS[i], window + width)
    elseif cost < 0 and extra > horizon then
      local field = string.format('%d', extra)
      local have = redis.call('HGET', KEYS[i], field)
      local back = math.min(have and tonumber(have) or 0, -cost)
      if back > 0 then redis.call('HINCRBY', KEYS[i], field, -back) end
    end
  elseif check and used + cost > limit then
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
  staged[i] = {window, cost, width, current, used, allowed, retry, oldest, limit, extra}
end
local out = {admitted and 1 or 0}
for i = owed + 1, #KEYS do
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
  local share, slot, life = 0, 0, 0
  if admitted and check and s[10] > 0 and used + s[10] <= math.floor(s[9] * ceiling / 100) then
    -- charged to the slice it expires in: late in a slice, to the next one
    slot = s[4]
    if ((slot + 1) * s[3] - now) * 2 < math.min(longest, s[3]) then slot = slot + 1 end
    life = math.min(longest, (slot + 1) * s[3] - now)
    share = s[10]
    redis.call('HINCRBY', KEYS[i], string.format('%d', slot), share)
    redis.call('PEXPIRE', KEYS[i], s[1] + 2 * s[3])
  end
  out[#out + 1] = s[6]
  out[#out + 1] = used
  out[#out + 1] = s[7]
  out[#out + 1] = reset
  out[#out + 1] = share
  out[#out + 1] = slot
  out[#out + 1] = life
end
return out
"""

#: Values the script answers per bucket that is no debt.
STRIDE = 7

Call = tuple[list[str], list[int | str]]  # keys, arguments

_LONGEST_MS = int(MAX_TTL * 1000)


def call(
    debts: Sequence[Return],
    buckets: Sequence[Bucket],
    check: bool,
    asked: Sequence[int] | None = None,
) -> Call:
    """The script's keys and arguments: ``debts`` charged first (each to its slice), then
    ``buckets`` checked (or charged unchecked), with the shares `asked` for them."""
    args: list[int | str] = [
        "1" if check else "0",
        SLICES,
        len(debts),
        CEILING_PERCENT,
        _LONGEST_MS,
    ]
    keys = [bucket.key for bucket, _ in debts]
    for bucket, slot in debts:  # to a slice of its own: units given back
        args.extend(
            (bucket.limit, bucket.window_ms, -bucket.cost if slot >= 0 else bucket.cost, slot)
        )
    for i, bucket in enumerate(buckets):
        keys.append(bucket.key)
        args.extend((bucket.limit, bucket.window_ms, bucket.cost, asked[i] if asked else 0))
    return keys, args
