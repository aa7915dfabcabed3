"""Helpers every adapter uses to turn a provider's error answer into OneFlow's taxonomy.

The status decides the class (`error_class`); the adapter reads the message and code out of its
provider's error body and may refine the class (content filtered, overloaded, quota).
"""

from __future__ import annotations

import email.utils
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


def retry_after(headers: Mapping[str, str]) -> float | None:
    """Seconds to wait before retrying: `retry-after-ms`, else `retry-after` (seconds or an
    HTTP date); None when absent or unreadable."""
    value = headers.get("retry-after-ms")
    if value is not None:
        try:
            ms = float(value)
        except ValueError:
            ms = -1.0
        if ms >= 0:
            return ms / 1000
    value = headers.get("retry-after")
    if value is None:
        return None
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        seconds = when.timestamp() - time.time()
    return max(0.0, seconds) if seconds == seconds else None  # NaN is unreadable


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
