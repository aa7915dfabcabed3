"""`Call`: one request on its way through the pipeline, as hooks and usage sinks see it."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from decimal import Decimal
from typing import TYPE_CHECKING, Literal, TypeVar

from oneflow_ai.auth.principal import Principal
from oneflow_ai.billing.cost import Cost
from oneflow_ai.catalog import Modality
from oneflow_ai.domain.chat import ChatRequest, ChatResponse
from oneflow_ai.domain.embeddings import EmbeddingRequest, EmbeddingResponse
from oneflow_ai.domain.media import ImageRequest, ImageResponse, SpeechRequest, SpeechResponse
from oneflow_ai.domain.transcription import TranscriptionRequest, TranscriptionResponse
from oneflow_ai.domain.usage import Usage
from oneflow_ai.errors import GatewayError
from oneflow_ai.gateway.reasoning import unhonoured_reasoning
from oneflow_ai.limits import RateDecision
from oneflow_ai.providers.registry import Route
from oneflow_ai.routing.reasons import RouteReason

if TYPE_CHECKING:
    from oneflow_ai.catalog import ModelEntry
    from oneflow_ai.gateway.estimate import TokenEstimator

__all__ = [
    "Answer",
    "Attempt",
    "CacheDirective",
    "CacheKind",
    "CacheResult",
    "CacheStatus",
    "Call",
    "Operation",
    "Outcome",
    "Payload",
]

Operation = Literal["chat", "image", "speech", "embedding", "transcription"]
Payload = ChatRequest | ImageRequest | SpeechRequest | EmbeddingRequest | TranscriptionRequest
Answer = ChatResponse | ImageResponse | SpeechResponse | EmbeddingResponse | TranscriptionResponse
P = TypeVar("P", bound=Payload)
Outcome = Literal["ok", "error", "cut_off", "cancelled"]
"""`ok`: answered in full; `error`: failed before any content reached the caller;
`cut_off`: a stream broke after content reached the caller; `cancelled`: the caller left."""

CacheResult = Literal["hit", "miss", "bypass"]
CacheKind = Literal["exact", "semantic"]

_MODALITY: dict[Operation, Modality] = {
    "chat": "text",
    "image": "image",
    "speech": "audio",
    "embedding": "embedding",
    "transcription": "transcription",
}


@dataclass(slots=True)
class Attempt:
    """One upstream call: the model tried, how long it took, and how it failed (if it did)."""

    model: str
    provider: str
    latency_ms: float  # until the answer (for a stream: its first content) or the failure
    error: GatewayError | None = None
    started_at: float = 0.0  # time.perf_counter() when the attempt began


@dataclass(frozen=True, slots=True)
class CacheDirective:
    """The caller's say over the response cache for one request (the edge reads it from
    `Cache-Control` and `X-OneFlow-Cache-TTL`): `read` false skips the lookup (`no-cache`,
    `no-store`), `write` false skips storing the answer (`no-store`), `ttl_seconds` keeps the
    answer this long instead of the configured time."""

    read: bool = True
    write: bool = True
    ttl_seconds: int | None = None


@dataclass(slots=True)
class CacheStatus:
    """What the response cache did with a call: `hit` (answered from the cache: `usage` is
    what the live answer used on `model`, charged `fraction` of its cost, the rest is
    `saved_micro_credits`), `miss` (looked up, not found) or `bypass` (not looked up).
    `kind` is `semantic` for a hit the semantic cache found (`similarity`: how close its
    question was); `embedding_cost` is what embedding the question cost, when it was."""

    result: CacheResult
    fraction: Decimal = Decimal(0)
    usage: Usage | None = None
    model: str | None = None
    saved_micro_credits: int = 0
    kind: CacheKind = "exact"
    similarity: float | None = None
    embedding_cost: Cost | None = None

    @property
    def hit(self) -> bool:
        return self.result == "hit"


@dataclass(slots=True, eq=False)
class Call:
    """What was asked, by whom, and (as it runs) what happened.

    Set by the edge: `request_id`, `principal`, `operation`, `request`, `model` (as the caller
    named it: a catalog id, an alias, `auto` or a strategy name), `strategy`, `stream`,
    `requested_fallbacks` (with `fallbacks_param`).
    Set by the pipeline before the pre-hooks: `candidates` (primary first, then fallbacks; a
    pre-hook may reorder or trim them), `route_reason` (why the primary, in a few words) and,
    when OneFlow chooses the model, `estimated_input_tokens` (a rough count the choice was
    based on). Set while it runs: `route` (the model answering, or the last one tried),
    `attempts`, `fallbacks` (how many candidates fell through before the answering one; the
    `route_reason` then says which and why), then `usage`, `cost`, `outcome`,
    `error`, `answer` (a non-streamed answer), `first_content_ms`, `finished_at`. `state` is
    scratch space for hooks, keyed by the hook's name.
    """

    request_id: str
    principal: Principal
    operation: Operation
    request: Payload
    model: str
    strategy: str | None = None
    stream: bool = False
    # The fallback models the caller named (body `models` or the X-OneFlow-Fallbacks header;
    # None: the catalog's for the model), and where it named them (for errors).
    requested_fallbacks: tuple[str, ...] | None = None
    fallbacks_param: str = "models"
    started_at: float = field(default_factory=time.perf_counter)
    estimated_input_tokens: int = 0
    candidates: list[Route] = field(default_factory=list)
    route_reason: RouteReason | None = None
    route: Route | None = None
    fallbacks: int = 0  # candidates before the answering one (failed or skipped: circuit open)
    attempts: list[Attempt] = field(default_factory=list)
    usage: Usage | None = None
    cost: Cost | None = None
    outcome: Outcome | None = None
    error: GatewayError | None = None
    answer: Answer | None = None  # not for streams
    first_content_ms: float | None = None
    finished_at: float | None = None
    rate_limit: RateDecision | None = None  # the caller's tightest window, when one applies
    cache_directive: CacheDirective = field(default_factory=CacheDirective)
    cache: CacheStatus | None = None  # set by the response cache's hook (None: no cache ran)
    state: dict[str, object] = field(default_factory=dict)  # the hooks' own, by hook
    _prompt_tokens: dict[str | None, int] = field(default_factory=dict, repr=False)

    @property
    def modality(self) -> Modality:
        return _MODALITY[self.operation]

    def payload(self, kind: type[P]) -> P:
        """The request, as the `kind` of request its operation carries (another is a bug)."""
        request = self.request
        if not isinstance(request, kind):
            raise TypeError(f"a {self.operation} call carries a {type(request).__name__}")
        return request

    def prompt_tokens(self, estimator: TokenEstimator, entry: ModelEntry | None) -> int:
        """A chat or embedding call's input tokens on `entry`'s tokenizer, counted once per
        tokenizer (the rate-limit and ledger hooks both need them, with the gateway's one
        estimator)."""
        tokenizer = entry.tokenizer if entry is not None else None
        counted = self._prompt_tokens.get(tokenizer)
        if counted is None:
            request = self.request
            if isinstance(request, EmbeddingRequest):
                counted = sum(self.input_token_counts(estimator, entry))
            else:
                counted = estimator.prompt_tokens(self.payload(ChatRequest), entry)
            self._prompt_tokens[tokenizer] = counted
        return counted

    def input_token_counts(self, estimator: TokenEstimator, entry: ModelEntry | None) -> list[int]:
        """An embedding call's tokens, input by input (a token array counts its length),
        counted once per tokenizer."""
        key = f"embedding.tokens.{entry.tokenizer if entry is not None else None}"
        counted = self.state.get(key)
        if isinstance(counted, list):
            return counted
        request = self.payload(EmbeddingRequest)
        counts = [
            estimator.text_tokens(item, entry) if isinstance(item, str) else len(item)
            for item in request.inputs
        ]
        self.state[key] = counts
        return counts

    @property
    def ignored_params(self) -> tuple[str, ...]:
        """The caller's chat fields the answering model could not honour: those only its own
        dialect carries (`ChatRequest.dialect_only`), when the model speaks the other one."""
        request, route = self.request, self.route
        if route is None or not isinstance(request, ChatRequest):
            return ()
        if request.raw_dialect == "responses":  # refused by a bridged model, never ignored
            return ()
        named = request.dialect_only if route.dialect != request.raw_dialect else ()
        reasoning = unhonoured_reasoning(request, route.entry, route.dialect or "")
        return (*named, reasoning) if reasoning is not None else named

    @property
    def latency_ms(self) -> float:
        """Time from the pipeline's start to the end of the answer (so far, if running)."""
        end = self.finished_at if self.finished_at is not None else time.perf_counter()
        return (end - self.started_at) * 1000
