"""Helpers every adapter uses to turn a provider's error answer into OneFlow's taxonomy.

The status decides the class (`error_class`); the adapter reads the message and code out of its
provider's error body and may refine the class (content filtered, overloaded, quota).
"""

from __future__ import annotations

import email.utils
import math
import time
from collections.abc import Mapping

import orjson

from oneflow_ai.errors import (
    ContentFilteredError,
    ProviderAuthError,
    ProviderBadRequestError,
    ProviderError,
    ProviderRateLimitedError,
    ProviderTimeoutError,
    ProviderUnavailableError,
)

__all__ = ["error_class", "json_object", "provider_error", "retry_after"]

_MAX_MESSAGE = 500
#: Errors whose provider code tells the caller something about their request.
_CALLERS_CODES = (ProviderBadRequestError, ContentFilteredError, ProviderRateLimitedError)


def retry_after(headers: Mapping[str, str], *, now: float | None = None) -> float | None:
    """The provider's retry hint in seconds, or None when it gave none (or an unusable one).

    `headers` must be case-insensitive (aiohttp's `CIMultiDictProxy`) or lower-cased.
    `retry-after-ms` is read first, then `retry-after` as seconds or an HTTP date (`now` is the
    current Unix time, for the date form). Negative values and past dates give 0; garbage gives
    None.
    """
    raw_ms = headers.get("retry-after-ms")
    if raw_ms is not None:
        millis = _finite(raw_ms)
        if millis is not None:
            return max(0.0, millis / 1000.0)
    raw = headers.get("retry-after")
    if raw is None:
        return None
    seconds = _finite(raw)
    if seconds is not None:
        return max(0.0, seconds)
    try:
        when = email.utils.parsedate_to_datetime(raw.strip())
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:  # an HTTP date is always GMT
        return None
    current = time.time() if now is None else now
    return max(0.0, when.timestamp() - current)


def _finite(text: str) -> float | None:
    try:
        value = float(text.strip())
    except ValueError:
        return None
    return value if math.isfinite(value) else None


def error_class(status: int) -> type[ProviderError]:
    """The taxonomy class of an upstream HTTP status."""
    if status in (401, 402, 403):
        return ProviderAuthError
    if status in (408, 504):
        return ProviderTimeoutError
    if status == 429:
        return ProviderRateLimitedError
    if status >= 500:
        return ProviderUnavailableError
    if 400 <= status < 500:
        return ProviderBadRequestError
    return ProviderError


def json_object(body: bytes) -> dict[str, object]:
    """The body as a JSON object, or {} if it is not one."""
    try:
        value = orjson.loads(body)
    except orjson.JSONDecodeError:
        return {}
    return value if isinstance(value, dict) else {}


def provider_error(
    cls: type[ProviderError],
    provider: str,
    status: int,
    headers: Mapping[str, str],
    message: str,
    *,
    code: str | None = None,
    param: str | None = None,
) -> ProviderError:
    """A `cls` error carrying the provider's message (trimmed), status and retry-after.

    An authentication failure is about OneFlow's own provider key, not the caller's: its
    message stays generic so that nothing about the key reaches the caller.
    """
    text = message.strip() or f"HTTP {status}"
    if cls is ProviderAuthError:
        text = f"the provider refused OneFlow's credentials (HTTP {status}, {code or 'no code'})"
    if not issubclass(cls, _CALLERS_CODES):
        # A code such as `invalid_api_key` or `server_error` describes the provider's side,
        # not the caller's request: the edge gives the caller OneFlow's own code instead.
        code = None
    if len(text) > _MAX_MESSAGE:
        text = text[:_MAX_MESSAGE] + "…"
    return cls(
        f"{provider}: {text}",
        provider=provider,
        upstream_status=status,
        code=code,
        param=param,
        retry_after=retry_after(headers),
    )
