"""The semantic cache: a paraphrase answered from the nearest stored question
(docs/cache.md#semantic-cache).

For a chat call of a policy with `semantic: {model, threshold}` that the exact cache missed,
the last user turn is embedded with `model`, through the pipeline like any `/v1/embeddings`
call of the caller (rate-limited, charged to its project, on its usage record). The index
(`storage/semantic_index.py`) gives the most similar question asked in the same scope (the
same model, strategy, system prompt, earlier turns and every other field, see
`cache_entry.semantic_question`); at `threshold` or above, the answer stored for it under its
exact key answers this call. A miss keeps the vector with the call, and the question joins the
index once its answer is stored.

Whatever fails (the embedding call refused or failed, the index unreachable) makes the call
an ordinary miss: logged at most once a minute, never an error.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import structlog

from oneflow_ai.billing.cost import Cost
from oneflow_ai.domain.embeddings import EmbeddingRequest, EmbeddingResponse, Vector
from oneflow_ai.gateway.cache_entry import CacheEntry, semantic_question
from oneflow_ai.gateway.call import Call
from oneflow_ai.observability.failure_log import FailureLog
from oneflow_ai.settings import SemanticPolicy
from oneflow_ai.storage.response_cache import ResponseCacheStore
from oneflow_ai.storage.semantic_index import SemanticIndex

__all__ = ["Embedder", "SemanticCache", "SemanticHit", "pipeline_embedder"]

log = structlog.get_logger("oneflow.cache")

#: Embeds one text with a model for the caller of a call: the vector and what it cost.
Embedder = Callable[[Call, str, str], Awaitable[tuple[Vector, Cost | None]]]
_PENDING = "cache.semantic"


@dataclass(frozen=True, slots=True)
class SemanticHit:
    entry: CacheEntry
    similarity: float


@dataclass(frozen=True, slots=True)
class _Pending:
    scope: str
    vector: Vector


class SemanticCache:
    """Finds and remembers questions for `ResponseCache` (gateway/cache_hook.py)."""

    def __init__(
        self,
        index: SemanticIndex,
        store: ResponseCacheStore,
        *,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.index = index
        self._store = store
        self.embedder: Embedder | None = None  # set once the pipeline exists
        self._unavailable = FailureLog(
            log,
            "semantic_cache_unavailable",
            hint="calls are looked up in the exact cache only until it works again",
            monotonic=monotonic,
        )

    async def lookup(
        self, call: Call, policy: SemanticPolicy, *, shared: bool
    ) -> tuple[SemanticHit | None, Cost | None]:
        """The stored answer of the nearest question at `policy.threshold` or above (None:
        a miss), and what embedding the question cost."""
        question = semantic_question(call, shared=shared, embedder=policy.model)
        if question is None or self.embedder is None:
            return None, None
        scope, text = question
        try:
            vector, cost = await self.embedder(call, policy.model, text)
        except Exception as exc:
            self._failed("embedding", exc)
            return None, None
        call.state[_PENDING] = _Pending(scope, vector)
        try:
            found = await self.index.nearest(scope, vector)
            if found is None or found[1] < policy.threshold:
                return None, cost
            data = await self._store.get(found[0])
        except Exception as exc:
            self._failed(self.index.kind, exc)
            return None, cost
        entry = CacheEntry.decode(data, found[0]) if data is not None else None
        return (SemanticHit(entry, found[1]) if entry is not None else None), cost

    async def remember(self, call: Call, key: str, ttl_seconds: int) -> None:
        """Add the question of `call` (a miss whose answer was just stored under `key`)."""
        pending = call.state.pop(_PENDING, None)
        if not isinstance(pending, _Pending):
            return
        try:
            await self.index.add(pending.scope, key, pending.vector, ttl_seconds)
        except Exception as exc:
            self._failed(self.index.kind, exc)

    @property
    def failures(self) -> int:
        return self._unavailable.failures

    def _failed(self, what: str, exc: Exception) -> None:
        self._unavailable.failed(exc, failed=what)


def pipeline_embedder(embed: Callable[[Call], Awaitable[EmbeddingResponse]]) -> Embedder:
    """An embedder that runs the embedding through `embed` (the pipeline's): the call of the
    caller of `parent`, with a request id of its own (its ledger charge and usage record)."""

    async def embedder(parent: Call, model: str, text: str) -> tuple[Vector, Cost | None]:
        request = EmbeddingRequest(model=model, inputs=[text])
        request_id = f"{parent.request_id[:50]}-emb" if parent.request_id else uuid.uuid4().hex
        call = Call(
            request_id=request_id,
            principal=parent.principal,
            operation="embedding",
            request=request,
            model=model,
        )
        response = await embed(call)
        if not response.vectors:
            raise ValueError("the embedding model answered no vector")
        return response.vectors[0], call.cost

    return embedder
