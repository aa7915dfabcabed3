"""One request as usage analytics sees it: who, which model, what it used and cost, how fast.

Every request leaves exactly one record, errors and refusals included. Money is integer
micro-credits (see :mod:`oneflow_ai.domain.money`); times are UTC.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

__all__ = ["RequestOutcome", "UsageRecord"]


@dataclass(frozen=True, slots=True)
class RequestOutcome:
    """How a request ended, as the pipeline saw it (the parts of a usage record it alone knows).

    ``status`` is the HTTP status the caller got (for a stream: 200, or the status of the
    error event that ended it); ``error`` the ``GatewayError.kind`` when it failed;
    ``latency_ms`` the time to the last byte, ``ttft_ms`` the time to the first token or byte;
    ``started_at`` when the request arrived (defaults to when its credits were reserved).
    """

    status: int = 200
    error: str | None = None
    latency_ms: int | None = None
    ttft_ms: int | None = None
    stream: bool = False
    started_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class UsageRecord:
    """One row of ``usage_records``; ``status >= 400`` counts as an error."""

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

    @property
    def is_error(self) -> bool:
        return self.status >= 400
