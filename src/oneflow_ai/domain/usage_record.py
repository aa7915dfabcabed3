"""One request as usage analytics and the request log see it: who, which model and why, what
it used and cost, how fast.

Every request leaves exactly one record, errors and refusals included. Money is integer
micro-credits (see :mod:`oneflow_ai.domain.money`); times are UTC.

:class:`UsageRecord` and :class:`RequestOutcome`, built for every request, are not frozen: a
frozen dataclass costs about three times as much to build (each field is set through
``object.__setattr__``). Nothing changes one once it is built.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

__all__ = ["AttemptSummary", "RequestOutcome", "RequestRoute", "UsageRecord"]

#: How much of an upstream error's message a record keeps.
ERROR_MESSAGE_CHARS = 300


@dataclass(frozen=True, slots=True)
class AttemptSummary:
    """One upstream call of a request: the model tried, how long it took, how it failed."""

    model: str
    provider: str
    latency_ms: int
    error: str | None = None  # the error's kind (``GatewayError.kind``)
    status: int | None = None  # the status that error maps to
    message: str | None = None  # its message, at most ERROR_MESSAGE_CHARS characters

    def as_dict(self) -> dict[str, object]:
        return {
            "model": self.model,
            "provider": self.provider,
            "latency_ms": self.latency_ms,
            "error": self.error,
            "status": self.status,
            "message": self.message,
        }


@dataclass(frozen=True, slots=True)
class RequestRoute:
    """How a request was routed: the model as the caller named it, the strategy that chose
    (``None``: the caller named a model), why (the routing's short reason, when it gives one),
    the candidates in order, how many fell through before the answering one, and each upstream
    call. ``candidates`` and ``attempts`` are kept only when they tell more than the record's
    own model, provider and latency (a chain, a failure)."""

    model_requested: str | None = None
    strategy: str | None = None
    reason: str | None = None
    fallbacks: int = 0
    candidates: tuple[str, ...] = ()
    attempts: tuple[AttemptSummary, ...] = ()

    @property
    def detail(self) -> dict[str, object] | None:
        """The candidates and attempts worth storing, or ``None``."""
        if len(self.candidates) <= 1 and not any(a.error for a in self.attempts):
            return None
        return {
            "candidates": list(self.candidates),
            "attempts": [attempt.as_dict() for attempt in self.attempts],
        }


@dataclass(slots=True)
class RequestOutcome:
    """How a request ended, as the pipeline saw it (the parts of a usage record it alone knows).

    ``status`` is the HTTP status the caller got (for a stream: 200, or the status of the
    error event that ended it); ``error`` the ``GatewayError.kind`` when it failed;
    ``latency_ms`` the time to the last byte, ``ttft_ms`` the time to the first token or byte;
    ``started_at`` when the request arrived (defaults to when its credits were reserved);
    ``cache_hit`` and ``credits_saved`` (micro-credits) when the response cache answered.
    """

    status: int = 200
    error: str | None = None
    latency_ms: int | None = None
    ttft_ms: int | None = None
    stream: bool = False
    started_at: datetime | None = None
    route: RequestRoute | None = None
    cache_hit: bool = False  # answered from the response cache ...
    credits_saved: int = 0  # ... for this many micro-credits less than the live call cost


@dataclass(slots=True)
class UsageRecord:
    """One row of ``usage_records``; ``status >= 400`` counts as an error.

    ``cached_input_tokens`` (input tokens read from the provider's prompt cache),
    ``cache_write_5m_tokens`` / ``cache_write_1h_tokens`` (written to it; all three part of
    ``input_tokens``) and ``reasoning_tokens`` (part of ``output_tokens``) are the token
    classes providers report besides the totals (see :class:`~oneflow_ai.domain.usage.Usage`);
    ``cache_hit`` marks an answer served from OneFlow's response cache and ``credits_saved``
    the micro-credits it was not charged.
    """

    request_id: str
    occurred_at: datetime
    status: int
    project_id: str | None = None
    user_id: str | None = None
    key_id: str | None = None
    model: str | None = None
    provider: str | None = None
    error: str | None = None
    stream: bool = False
    input_tokens: int = 0
    output_tokens: int = 0
    images: int = 0
    characters: int = 0
    micro_credits: int = 0
    price_table_version: str | None = None
    estimated: bool = False
    latency_ms: int | None = None
    ttft_ms: int | None = None
    cached_input_tokens: int = 0
    reasoning_tokens: int = 0
    cache_hit: bool = False
    cache_write_5m_tokens: int = 0
    cache_write_1h_tokens: int = 0
    route: RequestRoute | None = None
    audio_seconds: int = 0
    credits_saved: int = 0  # micro-credits a response-cache hit did not charge

    @property
    def is_error(self) -> bool:
        return self.status >= 400
