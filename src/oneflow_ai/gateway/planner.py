"""Planning a call: which models may answer it, in which order, and why.

`Planner.plan` resolves a concrete model (checked against the caller's allow-list, the
endpoint's modality, the catalog's prices, an embedding model's input limits) or asks the
`ModelSelector` for a strategy's chain over the available models that fit the request (its
estimated tokens within their context window), then adds the fallbacks (`planning.py`,
`fallback_entries`). The pipeline runs the chain it leaves in `call.candidates`.
"""

from __future__ import annotations

from collections.abc import Sequence

from oneflow_ai.auth.permissions import ensure_model_allowed, may_use
from oneflow_ai.catalog import ModelEntry
from oneflow_ai.domain.chat import ChatRequest
from oneflow_ai.domain.embeddings import EmbeddingRequest
from oneflow_ai.domain.media import ImageRequest
from oneflow_ai.domain.transcription import TranscriptionRequest
from oneflow_ai.errors import BadRequestError
from oneflow_ai.gateway.call import Call
from oneflow_ai.gateway.embeddings import check_embedding, embedding_unfit
from oneflow_ai.gateway.estimate import TokenEstimator
from oneflow_ai.gateway.planning import (
    EXPECTED_OUTPUT_TOKENS,
    ModelSelector,
    RouteQuery,
    fallback_entries,
)
from oneflow_ai.providers.registry import ProviderRegistry
from oneflow_ai.routing.reasons import requested

__all__ = ["Planner"]


class Planner:
    """Plans calls on `registry`'s models, choosing by strategy with `selector`."""

    def __init__(
        self, registry: ProviderRegistry, selector: ModelSelector, estimator: TokenEstimator
    ) -> None:
        self.registry = registry
        self.selector = selector
        self.estimator = estimator

    def plan(self, call: Call) -> None:
        """Set `call.candidates` (the primary, then its fallbacks) and `call.route_reason`."""
        if call.strategy is None:
            route = self.registry.resolve(call.model)
            ensure_model_allowed(call.principal, route.entry.id)
            self._check_concrete(call, route.entry)
            fallbacks = self._fallbacks(call, [route.entry])
            call.candidates = [route, *(self.registry.route(entry) for entry in fallbacks)]
            call.route_reason = requested(route.model)
            return
        if call.operation == "chat":  # a rough count before a model (and its tokenizer) is known
            call.estimated_input_tokens = call.prompt_tokens(self.estimator, None)
        usable = [
            entry
            for entry in self.registry.available(call.modality)
            if entry.is_priced and may_use(call.principal, entry.id)
        ]
        eligible = [entry for entry in usable if self._fits(call, entry)]
        if call.operation == "embedding" and eligible:
            call.estimated_input_tokens = call.prompt_tokens(self.estimator, eligible[0])
        chosen = self.selector(self._query(call, call.strategy), eligible)
        if not chosen.models:
            if call.operation == "embedding" and usable:
                embedding_unfit(call, usable, self.estimator)
            raise BadRequestError(
                f"No available {call.modality} model can serve this request",
                param="model",
                code="no_model_available",
            )
        models = [*chosen.models, *self._fallbacks(call, chosen.models)]
        call.candidates = [self.registry.route(entry) for entry in models]
        call.route_reason = chosen.reason

    def _fallbacks(self, call: Call, chosen: Sequence[ModelEntry]) -> list[ModelEntry]:
        def usable(entry: ModelEntry) -> bool:
            if not self.registry.is_available(entry):
                return False
            request = call.request
            if isinstance(request, ImageRequest) and entry.pricing is not None:
                return entry.pricing.image_price(request.size, request.quality) is not None
            if call.operation == "chat" and not call.estimated_input_tokens:
                call.estimated_input_tokens = call.prompt_tokens(self.estimator, None)
            return self._fits(call, entry)

        return fallback_entries(self.registry.catalog, call, chosen, usable=usable)

    def need_tokens(self, call: Call, entry: ModelEntry) -> int:
        """What a chat call may use on `entry` (prompt plus the most it may answer), for the
        headroom its deployments reported; 0 for other calls."""
        request = call.request
        if not isinstance(request, ChatRequest):
            return 0
        return call.prompt_tokens(self.estimator, entry) + (request.max_tokens or 0)

    def _check_concrete(self, call: Call, entry: ModelEntry) -> None:
        if entry.modality != call.modality:
            raise BadRequestError(
                f"The model '{entry.id}' is a {entry.modality} model; this endpoint needs a "
                f"{call.modality} model",
                param="model",
            )
        if not entry.is_priced:
            raise BadRequestError(
                f"The model '{entry.id}' has no price in the catalog and cannot be billed",
                param="model",
            )
        if call.operation == "embedding":
            check_embedding(call, entry, self.estimator, strategy=False)
        if call.operation == "image" and entry.pricing is not None:
            request = call.payload(ImageRequest)
            if entry.pricing.image_price(request.size, request.quality) is None:
                sizes = sorted({row.size for row in entry.pricing.per_image if row.size})
                qualities = sorted({row.quality for row in entry.pricing.per_image if row.quality})
                param = "quality" if request.size in sizes or request.size is None else "size"
                raise BadRequestError(
                    f"The model '{entry.id}' does not make images of size "
                    f"'{request.size}' and quality '{request.quality}' "
                    f"(sizes: {', '.join(sizes)}; qualities: {', '.join(qualities) or 'any'})",
                    param=param,
                )

    def _fits(self, call: Call, entry: ModelEntry) -> bool:
        if call.operation == "embedding":
            try:
                check_embedding(call, entry, self.estimator, strategy=True)
            except BadRequestError:
                return False
            return True
        if call.operation != "chat" or entry.context_window is None:
            return True
        request = call.payload(ChatRequest)
        return call.estimated_input_tokens + (request.max_tokens or 0) <= entry.context_window

    def _query(self, call: Call, strategy: str) -> RouteQuery:
        request = call.request
        if isinstance(request, ChatRequest):
            return RouteQuery(
                "text",
                strategy,
                input_tokens=call.estimated_input_tokens,
                output_tokens=request.max_tokens or EXPECTED_OUTPUT_TOKENS,
            )
        if isinstance(request, ImageRequest):
            return RouteQuery(
                "image",
                strategy,
                images=request.n,
                image_size=request.size,
                image_quality=request.quality,
            )
        if isinstance(request, EmbeddingRequest):
            return RouteQuery("embedding", strategy, input_tokens=call.estimated_input_tokens)
        if isinstance(request, TranscriptionRequest):
            return RouteQuery("transcription", strategy, audio_seconds=request.max_seconds)
        return RouteQuery("audio", strategy, characters=len(request.input))
