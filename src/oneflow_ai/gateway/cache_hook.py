"""The exact response cache as two pipeline hooks (docs/cache.md).

`ResponseCache` runs early (before the rate limits and the ledger): it decides whether the
cache applies to the call (the caller's project or key opted in, the request's
`Cache-Control`, `temperature`), looks the answer up and leaves what it found on the call
(`call.cache`), so that the rate-limit hook can let a hit through uncounted (when configured)
and the ledger reserves what a hit will cost: the configured fraction of its live cost. Its
`after` stores an answer that completed cleanly (a stream's events are collected as they pass).

`CacheServer` runs last, once the other pre-hooks have admitted the call: a hit is answered
from the entry (`ShortCircuit`), as the model that gave it; the pipeline replays it as a stream
when one was asked for, in the caller's dialect.

With `coalesce` in its policy, a miss claims its key in the idempotency store (Redis, shared
by the replicas, or this process's): an identical request arriving meanwhile waits for the
claim's release (at most IDEMPOTENCY_WAIT_SECONDS), then looks again, and is a hit if the first
answer was stored; the claim is released when the first call ends, however it ends.

With `semantic` in its policy, an exact miss of a chat call asks the semantic cache
(gateway/semantic_cache.py) for the answer of the nearest paraphrase of its last user turn.

A store that fails (Redis away) makes the call a bypass: counted, logged at most once a
minute, and the call goes on to the provider. Adding an operation: give `cache_key` its fields
and `CacheEntry` its answer type; the hooks need nothing else.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from decimal import Decimal

import structlog

from oneflow_ai.auth.principal import Principal
from oneflow_ai.billing.cost import Cost
from oneflow_ai.domain.chat import ChatRequest, ChatResponse
from oneflow_ai.domain.embeddings import EmbeddingResponse
from oneflow_ai.domain.media import ImageResponse
from oneflow_ai.domain.money import micro_credits_to_credits
from oneflow_ai.gateway.cache_entry import (
    CacheEntry,
    cache_key,
    has_thinking,
    response_from_events,
)
from oneflow_ai.gateway.call import CacheKind, CacheResult, CacheStatus, Call
from oneflow_ai.gateway.hooks import Hook, RunningStream, ShortCircuit, StreamWatcher
from oneflow_ai.gateway.semantic_cache import SemanticCache
from oneflow_ai.observability.failure_log import FailureLog
from oneflow_ai.observability.metrics import GatewayMetrics
from oneflow_ai.resilience.idempotency import Claimed, IdempotencyStore
from oneflow_ai.settings import CachePolicy, Settings
from oneflow_ai.storage.response_cache import ResponseCacheStore

__all__ = ["CacheServer", "ResponseCache"]

log = structlog.get_logger("oneflow.cache")

_KEY = "cache.key"
_TTL = "cache.ttl"
_ENTRY = "cache.entry"
_EVENTS = "cache.events"
_CLAIM = "cache.claim"
#: The operations the cache answers (those `cache_key` knows).
_OPERATIONS = ("chat", "image", "embedding")


class ResponseCache(Hook):
    name = "cache"

    def __init__(
        self,
        store: ResponseCacheStore,
        settings: Settings,
        metrics: GatewayMetrics,
        *,
        claims: IdempotencyStore | None = None,
        semantic: SemanticCache | None = None,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.store = store
        self.semantic = semantic  # answers paraphrases for the policies that ask for it
        self._claims = claims
        self._claim_wait = settings.idempotency_wait_seconds
        self._projects = settings.cache_projects
        self._keys = settings.cache_keys
        self._ttl = settings.cache_ttl_seconds
        self._max_ttl = settings.cache_max_ttl_seconds
        self._fraction = settings.cache_hit_fraction
        self._metrics = metrics
        self._unavailable = FailureLog(
            log,
            "cache_unavailable",
            hint="requests bypass the response cache until it answers again",
            monotonic=monotonic,
        )

    def policy(self, principal: Principal) -> CachePolicy | None:
        """The caller's policy: its key's (CACHE_KEYS), else the one its project stores
        (projects API), else its project's in CACHE_PROJECTS, else every project's ("*")."""
        if principal.key_id is not None:
            policy = self._keys.get(principal.key_id)
            if policy is not None:
                return policy
        if principal.cache is not None:
            return principal.cache
        return self._projects.get(principal.project_id) or self._projects.get("*")

    async def before(self, call: Call) -> ShortCircuit | None:
        policy = self.policy(call.principal)
        if policy is None or not policy.enabled or call.operation not in _OPERATIONS:
            return None
        directive = call.cache_directive
        request = call.request
        if (
            isinstance(request, ChatRequest)
            and (request.temperature or 0) > 0
            and not policy.allow_temperature
        ) or not (directive.read or directive.write):
            return self._status(call, "bypass")
        key = cache_key(call, shared=policy.shared)
        if key is None:
            return None
        call.state[_KEY] = key
        ttl = directive.ttl_seconds or policy.ttl_seconds or self._ttl
        call.state[_TTL] = min(ttl, self._max_ttl)
        if call.stream and directive.write:
            call.state[_EVENTS] = []
        if not directive.read:
            return self._status(call, "bypass")
        try:
            data = await self.store.get(key)
        except Exception as exc:
            self._failed(exc)
            call.state.pop(_KEY, None)  # not stored either: the store is away
            return self._status(call, "bypass")
        entry = CacheEntry.decode(data, key) if data is not None else None
        if entry is None and policy.coalesce and self._claims is not None:
            entry = await self._coalesce(call, key)
        similarity: float | None = None
        embedding: Cost | None = None
        if entry is None:
            entry, similarity, embedding = await self._semantic(call, policy)
        if entry is None or not any(r.model == entry.model for r in call.candidates):
            status = self._mark(call, "miss")
        else:
            status = self._hit(call, policy, entry, similarity)
        status.embedding_cost = embedding
        return None

    def _hit(
        self, call: Call, policy: CachePolicy, entry: CacheEntry, similarity: float | None
    ) -> CacheStatus:
        """Mark the call a hit on `entry` (a semantic one when its question was `similarity`
        close), answered by `CacheServer` once the other hooks admitted it."""
        fraction = policy.hit_fraction if policy.hit_fraction is not None else self._fraction
        call.state[_ENTRY] = entry
        call.state.pop(_EVENTS, None)
        kind: CacheKind = "exact" if similarity is None else "semantic"
        self._metrics.record_cache("hit", kind)
        status = call.cache = CacheStatus(
            "hit", fraction, entry.usage, entry.model, kind=kind, similarity=similarity
        )
        return status

    async def _semantic(
        self, call: Call, policy: CachePolicy
    ) -> tuple[CacheEntry | None, float | None, Cost | None]:
        """The semantic cache's answer (with its question's similarity), when the policy asks
        for it, and what embedding the question cost."""
        if policy.semantic is None or self.semantic is None:
            return None, None, None
        found, cost = await self.semantic.lookup(call, policy.semantic, shared=policy.shared)
        if found is None:
            return None, None, cost
        return found.entry, found.similarity, cost

    async def _coalesce(self, call: Call, key: str) -> CacheEntry | None:
        """Claim `key` for this call, or wait for the identical call holding it and read what
        it stored (None: this call answers, holding the claim)."""
        claims = self._claims
        assert claims is not None
        name = f"cache:{key}"
        try:
            begun = await claims.begin(name, key)
            if not isinstance(begun, Claimed):
                begun = await claims.wait(name, key, self._claim_wait)
            if not isinstance(begun, Claimed):
                return None  # still running past the wait: answer it ourselves
            call.state[_CLAIM] = begun  # released by `after`, whatever happens
            data = await self.store.get(key)
        except Exception as exc:
            self._failed(exc)
            return None
        entry = CacheEntry.decode(data, key) if data is not None else None
        if entry is not None:  # the call we waited for stored its answer
            call.state.pop(_CLAIM, None)
            await self._release(name, begun)
        return entry

    async def _release(self, name: str, claim: Claimed) -> None:
        assert self._claims is not None
        try:
            await self._claims.release(name, claim)
        except Exception as exc:
            self._failed(exc)

    def stream_watcher(self, call: Call, progress: RunningStream) -> StreamWatcher | None:
        """The stream's events, kept for the answer to store (when it is to be stored)."""
        events = call.state.get(_EVENTS)
        return events.extend if isinstance(events, list) else None

    async def after(self, call: Call) -> None:
        try:
            await self._store(call)
        finally:
            claim = call.state.pop(_CLAIM, None)
            key = call.state.get(_KEY)
            if isinstance(claim, Claimed) and isinstance(key, str):
                await self._release(f"cache:{key}", claim)

    async def _store(self, call: Call) -> None:
        status = call.cache
        if status is None:
            return
        if status.hit:
            saved = status.saved_micro_credits
            if saved > 0:
                self._metrics.add_cache_saved(micro_credits_to_credits(saved))
            return
        key, ttl = call.state.get(_KEY), call.state.get(_TTL)
        if not isinstance(key, str) or not isinstance(ttl, int):
            return
        if not call.cache_directive.write or call.outcome != "ok":
            return
        if call.error is not None or call.route is None or call.usage is None:
            return
        answer: ChatResponse | ImageResponse | EmbeddingResponse | None
        if call.stream:
            events = call.state.get(_EVENTS)
            answer = response_from_events(events if isinstance(events, list) else [], call.usage)
        else:
            found = call.answer
            cached = ChatResponse | ImageResponse | EmbeddingResponse
            answer = found if isinstance(found, cached) else None
        if answer is None or (isinstance(answer, ChatResponse) and has_thinking(answer)):
            return
        entry = CacheEntry(key=key, model=call.route.model, usage=call.usage, answer=answer)
        try:
            await self.store.put(key, entry.encode(), ttl)
        except Exception as exc:
            self._failed(exc)
            return
        if self.semantic is not None:
            await self.semantic.remember(call, key, ttl)

    def _status(self, call: Call, result: CacheResult) -> ShortCircuit | None:
        """Mark the call `result` (a miss or bypass: the call goes on to the provider)."""
        self._mark(call, result)
        return None

    def _mark(self, call: Call, result: CacheResult) -> CacheStatus:
        self._metrics.record_cache(result)
        status = call.cache = CacheStatus(result, Decimal(0))
        return status

    @property
    def failures(self) -> int:
        """Store failures seen (each one a bypass, or an answer not stored)."""
        return self._unavailable.failures

    def _failed(self, exc: Exception) -> None:
        self._unavailable.failed(exc, store=self.store.kind)


class CacheServer(Hook):
    """The last pre-hook: answers a call `ResponseCache` found in the cache."""

    name = "cache_server"

    async def before(self, call: Call) -> ShortCircuit | None:
        status = call.cache
        if status is None or not status.hit:
            return None
        entry = call.state.get(_ENTRY)
        if not isinstance(entry, CacheEntry):  # a hit always has its entry (`_hit`)
            return None
        route = next(route for route in call.candidates if route.model == entry.model)
        return ShortCircuit(route, entry.fresh_answer(), usage=entry.usage)
