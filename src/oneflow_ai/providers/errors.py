"""Turning a provider's error answer into OneFlow's taxonomy, written once for every adapter.

The status decides the class (`error_class`); an adapter reads the message and code out of its
provider's error body and may refine the class (content filtered, overloaded, quota).
`map_status_error` is the mapping for any provider (what `ResilientHTTPClient` uses unless
given another), and `malformed` the error of an answer an adapter could not read.
"""

from __future__ import annotations

import email.utils
import math
import time
from collections.abc import Mapping
from typing import NamedTuple

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

__all__ = [
    "MALFORMED",
    "ErrorFields",
    "error_class",
    "error_fields",
    "error_message",
    "json_object",
    "malformed",
    "map_status_error",
    "provider_error",
    "retry_after",
    "stream_failure",
]

_MAX_MESSAGE = 500
#: What reading an answer of an unexpected shape raises (its JSON decoded, fields looked up).
MALFORMED = (orjson.JSONDecodeError, LookupError, TypeError, AttributeError)
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


def malformed(provider: str, model: str | None, exc: Exception) -> ProviderError:
    """The error of an answer whose shape could not be read (raise it `from exc`)."""
    return ProviderError(
        f"{provider}: malformed answer ({type(exc).__name__}: {exc})",
        provider=provider,
        model=model,
    )


def error_message(body: bytes) -> str | None:
    """The message of an OpenAI, Anthropic, ElevenLabs or Stability error body, if any."""
    data = json_object(body)
    for container in (data.get("error"), data.get("detail"), data):
        if isinstance(container, dict):
            message = container.get("message")
            if isinstance(message, str) and message:
                return message
        elif isinstance(container, str) and container:
            return container
    errors = data.get("errors")
    if isinstance(errors, list) and errors and isinstance(errors[0], str):
        return errors[0]
    return None


def map_status_error(status: int, headers: Mapping[str, str], body: bytes) -> ProviderError:
    """The mapping of any provider's error answer onto the taxonomy: by status
    (`error_class`: 401/402/403 -> ProviderAuthError; 408/504 -> ProviderTimeoutError;
    429 -> ProviderRateLimitedError; 5xx and 529 (Anthropic's overloaded) ->
    ProviderUnavailableError; any other 4xx -> ProviderBadRequestError), and 409 (a conflict,
    e.g. a lock timeout, that OpenAI's clients retry) -> ProviderUnavailableError; the message
    read from any of the providers' error shapes; `retry_after` from `retry-after-ms` /
    `Retry-After`. The transport names the provider and the model."""
    message = error_message(body) or f"the upstream answered HTTP {status}"
    cls = ProviderUnavailableError if status == 409 else error_class(status)
    return cls(message, upstream_status=status, retry_after=retry_after(headers))


class ErrorFields(NamedTuple):
    message: str
    kind: str | None
    code: str | None
    param: str | None


def error_fields(error: object) -> ErrorFields:
    """The `message`, `type`, `code` and `param` of a provider's error object (OpenAI's and
    Anthropic's share the shape; what is missing is empty), as text."""
    if not isinstance(error, dict):
        return ErrorFields("", None, None, None)
    message, kind, code, param = (error.get(k) for k in ("message", "type", "code", "param"))
    return ErrorFields(
        str(message) if message else "",
        str(kind) if kind else None,
        str(code) if code else None,
        str(param) if param else None,
    )


def stream_failure(
    provider: str,
    model: str,
    error: object,
    classes: Mapping[str, type[ProviderError]],
) -> ProviderError:
    """The error of an error event inside a stream: its class by the error's type (`classes`;
    unavailable when the type is unknown), its message the provider's."""
    fields = error_fields(error)
    cls = classes.get(fields.kind or "", ProviderUnavailableError)
    return cls(
        f"{provider}: {fields.message or fields.kind or 'error during the stream'}",
        provider=provider,
        model=model,
        code=fields.code,
        param=fields.param,
    )
