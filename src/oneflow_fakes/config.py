"""How a fake provider server behaves when a request does not say otherwise."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from oneflow_fakes.text import count_tokens

__all__ = ["FakeConfig"]


@dataclass(frozen=True, slots=True)
class FakeConfig:
    """Server-wide defaults. Every timing can be overridden per request by a fault.

    `api_key` None accepts any non-empty key (each provider's header still has to be there);
    a string accepts only that key, so a test can provoke each provider's real 401.
    `openai_auth` is where OpenAI's chat endpoint wants the key, as an OpenAI-compatible API
    may: `bearer` (`Authorization: Bearer`, OpenAI's own), `api-key` (Azure OpenAI's header)
    or `none` (a server of one's own: no key needed).
    `latency_ms` delays the response headers, `ttft_ms` the first content after them (for a
    non-streamed answer both add up, with `chunk_delay_ms` between the answer's chunks, so
    both modes take as long as each other). `hang_seconds` is how long a `timeout` fault
    keeps a request waiting (the handler ends as soon as the client goes away).
    `openai_request_limit`, when set, is how many chat requests OpenAI's endpoint answers
    (since the last reset) before it refuses with 429 `rate_limit_exceeded`; its answers
    count down `x-ratelimit-remaining-requests` as OpenAI's do.
    `count_tokens` counts the usage reported for prompts and answers; the default is a
    deterministic estimate (about four characters per token).
    """

    api_key: str | None = None
    openai_auth: str = "bearer"
    latency_ms: float = 0.0
    ttft_ms: float = 0.0
    chunk_delay_ms: float = 0.0
    reply_words: int = 16
    hang_seconds: float = 600.0
    any_model: bool = False
    call_log_size: int = 10_000
    openai_request_limit: int | None = None
    count_tokens: Callable[[str], int] = field(default=count_tokens, repr=False)

    def __post_init__(self) -> None:
        for name in ("latency_ms", "ttft_ms", "chunk_delay_ms", "hang_seconds"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must not be negative")
        if self.reply_words < 1:
            raise ValueError("reply_words must be at least 1")
        if self.call_log_size < 1:
            raise ValueError("call_log_size must be at least 1")
        if self.openai_auth not in ("bearer", "api-key", "none"):
            raise ValueError("openai_auth must be bearer, api-key or none")
        if self.openai_request_limit is not None and self.openai_request_limit < 0:
            raise ValueError("openai_request_limit must not be negative")
        if self.api_key is not None and not self.api_key:
            raise ValueError("api_key must be None (any key) or a non-empty key")
