"""Latency learned from live traffic: a decaying estimate per model.

Each model's expected latency is ``ttft_ms + ms_per_output_token * output_tokens``, both terms
seeded from the catalog's priors and moved by every completed call with an exponentially
weighted moving average (weight ``alpha`` for the newest sample):

- a streamed call reports its time to first token: ``ttft`` moves toward it, and
  ``ms_per_output_token`` toward ``(total - ttft) / output_tokens`` when tokens were produced;
- a call without a first-token time (a non-streamed answer, an image) scales both terms by
  ``observed / predicted``, i.e. each moves toward itself times that ratio.

``total_ms`` is the same average of observed totals, reported for observability.

Learned values relax back toward the priors with a half-life (``relax_half_life`` seconds
without samples halve the distance). Without it, a model that became slow once would stop
receiving traffic and so never be measured again; with it, such a model is retried as its
estimate drifts back, and the next samples decide.

With Redis the estimate is shared by every replica: observations update the local estimate at
once and are queued; :meth:`LatencyTracker.sync` (run every ``sync_interval`` seconds by the
background loop that :meth:`start` launches) sends them to Redis, where one Lua script per
model applies the same update atomically, and reads every model's shared estimate back.
Routing only ever reads the local copy, so it never waits on Redis.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, NamedTuple

import structlog

from oneflow_ai.catalog import Catalog, LatencyPrior
from oneflow_ai.tasks import stop

if TYPE_CHECKING:  # redis-py is imported only when REDIS_URL is set
    from redis.asyncio import Redis

__all__ = ["LatencyEstimate", "LatencyTracker"]

log = structlog.get_logger("oneflow.routing")


class LatencyEstimate(NamedTuple):
    """Expected latency of one model (milliseconds)."""

    ttft_ms: float
    ms_per_output_token: float
    total_ms: float
    samples: int

    def expected_ms(self, output_tokens: int = 0) -> float:
        return self.ttft_ms + self.ms_per_output_token * output_tokens


@dataclass(slots=True)
class _State:
    ttft: float
    mpot: float
    total: float
    samples: int
    updated_at: float


class _Sample(NamedTuple):  # immutable, and built without a frozen dataclass's setattr
    total_ms: float
    ttft_ms: float | None
    output_tokens: int
    at: float


# KEYS: the model's hash. ARGV: alpha, half_life (0: none), prior_ttft, prior_mpot, then
# (total_ms, ttft_ms or -1, output_tokens, at) for each sample.
_UPDATE = """
local key = KEYS[1]
local alpha = tonumber(ARGV[1])
local half_life = tonumber(ARGV[2])
local prior_ttft = tonumber(ARGV[3])
local prior_mpot = tonumber(ARGV[4])
local ttft = tonumber(redis.call('HGET', key, 'ttft') or ARGV[3])
local mpot = tonumber(redis.call('HGET', key, 'mpot') or ARGV[4])
local total = tonumber(redis.call('HGET', key, 'total') or '-1')
local n = tonumber(redis.call('HGET', key, 'n') or '0')
local ts = tonumber(redis.call('HGET', key, 'ts') or '0')
for i = 5, #ARGV, 4 do
  local obs = tonumber(ARGV[i])
  local first = tonumber(ARGV[i + 1])
  local tokens = tonumber(ARGV[i + 2])
  local at = tonumber(ARGV[i + 3])
  if half_life > 0 and n > 0 and at > ts then
    local keep = math.pow(0.5, (at - ts) / half_life)
    ttft = prior_ttft + (ttft - prior_ttft) * keep
    mpot = prior_mpot + (mpot - prior_mpot) * keep
  end
  if first >= 0 then
    ttft = ttft + alpha * (first - ttft)
    if tokens > 0 then
      local rate = math.max(0, obs - first) / tokens
      mpot = mpot + alpha * (rate - mpot)
    end
  else
    local predicted = ttft + mpot * tokens
    if predicted > 0 then
      local factor = 1 + alpha * (obs / predicted - 1)
      ttft = ttft * factor
      mpot = mpot * factor
    else
      ttft = ttft + alpha * (obs - ttft)
    end
  end
  if total < 0 then total = obs else total = total + alpha * (obs - total) end
  n = n + 1
  if at > ts then ts = at end
end
redis.call('HSET', key, 'ttft', tostring(ttft), 'mpot', tostring(mpot),
  'total', tostring(total), 'n', n, 'ts', tostring(ts))
redis.call('PEXPIRE', key, 604800000)
return {tostring(ttft), tostring(mpot), tostring(total), tostring(n), tostring(ts)}
"""


class LatencyTracker:
    """Per-model latency estimates, in process or shared through Redis (module docstring)."""

    def __init__(
        self,
        catalog: Catalog,
        *,
        alpha: float = 0.2,
        relax_half_life: float = 600.0,
        redis: Redis | None = None,
        prefix: str = "oneflow:",
        sync_interval: float = 1.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if not 0 < alpha <= 1:
            raise ValueError("alpha must be in (0, 1]")
        self.alpha = alpha
        self.relax_half_life = relax_half_life
        self.sync_interval = sync_interval
        self._priors: dict[str, LatencyPrior] = {m.id: m.latency for m in catalog.models}
        self._clock = clock
        self._states: dict[str, _State] = {}
        self._redis = redis
        self._prefix = f"{prefix}latency:"
        self._pending: dict[str, list[_Sample]] = {}
        self._update = redis.register_script(_UPDATE) if redis is not None else None
        self._task: asyncio.Task[None] | None = None

    @property
    def shared(self) -> bool:
        return self._redis is not None

    def prior(self, model: str) -> LatencyEstimate:
        prior = self._priors[model]
        return LatencyEstimate(
            prior.ttft_ms, prior.ms_per_output_token, prior.expected_ms(0), samples=0
        )

    def estimate(self, model: str) -> LatencyEstimate:
        """The current estimate for ``model`` (a catalog id). Never does I/O."""
        state = self._states.get(model)
        if state is None:
            return self.prior(model)
        ttft, mpot = self._relaxed(model, state, self._clock())
        return LatencyEstimate(ttft, mpot, state.total, state.samples)

    def expected_ms(self, model: str, output_tokens: int = 0) -> float:
        """``estimate(model).expected_ms(output_tokens)``, without building the estimate."""
        state = self._states.get(model)
        if state is None:
            prior = self._priors[model]
            return prior.ttft_ms + prior.ms_per_output_token * output_tokens
        ttft, mpot = self._relaxed(model, state, self._clock())
        return ttft + mpot * output_tokens

    def observe(
        self,
        model: str,
        *,
        total_ms: float,
        ttft_ms: float | None = None,
        output_tokens: int = 0,
    ) -> None:
        """Record one completed call of ``model`` (see the module docstring). Never does I/O."""
        if model not in self._priors or not math.isfinite(total_ms) or total_ms < 0:
            return
        if ttft_ms is not None and (not math.isfinite(ttft_ms) or ttft_ms < 0):
            ttft_ms = None
        sample = _Sample(total_ms, ttft_ms, max(0, output_tokens), self._clock())
        self._apply(model, sample)
        if self._redis is not None:
            self._pending.setdefault(model, []).append(sample)

    async def sync(self) -> None:
        """Send queued observations to Redis and load every model's shared estimate."""
        if self._redis is None or self._update is None:
            return
        pending, self._pending = self._pending, {}
        models = sorted(self._priors)
        try:
            async with self._redis.pipeline(transaction=False) as pipe:
                for model in models:
                    samples = pending.get(model)
                    if samples:
                        prior = self._priors[model]
                        args: list[str | float | int] = [
                            repr(self.alpha),
                            repr(self.relax_half_life or 0.0),
                            repr(prior.ttft_ms),
                            repr(prior.ms_per_output_token),
                        ]
                        for s in samples:
                            ttft = -1.0 if s.ttft_ms is None else s.ttft_ms
                            args += [repr(s.total_ms), repr(ttft), s.output_tokens, repr(s.at)]
                        await self._update(keys=[self._prefix + model], args=args, client=pipe)
                    else:
                        pipe.hmget(self._prefix + model, ["ttft", "mpot", "total", "n", "ts"])
                results = await pipe.execute()
        except Exception as exc:  # Redis trouble: keep routing on the local estimates
            log.warning("latency_sync_failed", error=repr(exc))
            return
        for model, values in zip(models, results, strict=True):
            if values and values[0] is not None:
                ttft, mpot, total, n, ts = (float(v) for v in values)
                self._states[model] = _State(ttft, mpot, total, int(n), ts)

    async def start(self) -> None:
        """Run :meth:`sync` every ``sync_interval`` seconds in the background (Redis only)."""
        if self._redis is None or self._task is not None:
            return
        self._task = asyncio.get_running_loop().create_task(self._loop())

    async def aclose(self) -> None:
        await stop(self._task)
        self._task = None
        await self.sync()

    async def _loop(self) -> None:
        while True:
            await self.sync()
            await asyncio.sleep(self.sync_interval)

    def _relaxed(self, model: str, state: _State, now: float) -> tuple[float, float]:
        if not self.relax_half_life or now <= state.updated_at:
            return state.ttft, state.mpot
        prior = self._priors[model]
        keep = 0.5 ** ((now - state.updated_at) / self.relax_half_life)
        return (
            prior.ttft_ms + (state.ttft - prior.ttft_ms) * keep,
            prior.ms_per_output_token + (state.mpot - prior.ms_per_output_token) * keep,
        )

    def _apply(self, model: str, sample: _Sample) -> None:
        alpha = self.alpha
        state = self._states.get(model)
        if state is None:
            prior = self._priors[model]
            ttft, mpot, total = prior.ttft_ms, prior.ms_per_output_token, -1.0
            samples = 0
        else:
            ttft, mpot = self._relaxed(model, state, sample.at)
            total, samples = state.total, state.samples
        if sample.ttft_ms is not None:
            ttft += alpha * (sample.ttft_ms - ttft)
            if sample.output_tokens > 0:
                rate = max(0.0, sample.total_ms - sample.ttft_ms) / sample.output_tokens
                mpot += alpha * (rate - mpot)
        else:
            predicted = ttft + mpot * sample.output_tokens
            if predicted > 0:
                factor = 1 + alpha * (sample.total_ms / predicted - 1)
                ttft *= factor
                mpot *= factor
            else:
                ttft += alpha * (sample.total_ms - ttft)
        total = sample.total_ms if total < 0 else total + alpha * (sample.total_ms - total)
        updated = max(sample.at, state.updated_at) if state is not None else sample.at
        self._states[model] = _State(ttft, mpot, total, samples + 1, updated)
