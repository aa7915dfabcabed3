"""The outcome of one admission, with the `X-RateLimit-*` headers it puts on the response."""

from __future__ import annotations

import math
from dataclasses import dataclass

__all__ = ["EXEMPT", "RateDecision"]


@dataclass(frozen=True, slots=True)
class RateDecision:
    """`limit`/`remaining`/`reset_seconds` describe the tightest request window of the caller
    (None when no limit applies); `retry_after` is set on refusals."""

    allowed: bool
    limit: int | None = None
    remaining: int | None = None
    reset_seconds: float | None = None
    retry_after: float | None = None

    @property
    def headers(self) -> dict[str, str]:
        """`X-RateLimit-Limit`, `-Remaining`, `-Reset` (seconds until the window next frees
        room), plus `Retry-After` (whole seconds, rounded up) on a refusal."""
        headers: dict[str, str] = {}
        if self.limit is not None and self.remaining is not None:
            headers["X-RateLimit-Limit"] = str(self.limit)
            headers["X-RateLimit-Remaining"] = str(max(0, self.remaining))
            headers["X-RateLimit-Reset"] = str(math.ceil(self.reset_seconds or 0))
        if self.retry_after is not None:
            headers["Retry-After"] = str(max(1, math.ceil(self.retry_after)))
        return headers


EXEMPT = RateDecision(allowed=True)
