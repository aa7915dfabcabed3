"""The one error tree of OneFlow.

Domain code raises these; only `api/errors.py` turns them into OpenAI- or Anthropic-shaped
responses. No HTTP types here: `status` is the HTTP status the edge should use, and `kind` is
the taxonomy the resilience and routing layers reason about.

    GatewayError
    ├── BadRequestError            400  invalid request (field named in `param`)
    │   └── NotFoundError          404  unknown model / resource
    ├── AuthenticationError        401  missing, malformed, expired or revoked credentials
    ├── PermissionDeniedError      403  authenticated but not allowed
    ├── ConflictError              409  e.g. a duplicate idempotent request still running
    ├── UnprocessableError         422  e.g. an idempotency key reused with another body
    ├── PayloadTooLargeError       413
    ├── RateLimitedError           429  our own limits (retry_after set)
    ├── InsufficientCreditsError   402  balance or hard budget cannot cover the request
    └── ProviderError                   an upstream failure, mapped by a provider adapter
        ├── ProviderAuthError      (upstream 401/403: our key is wrong; not the caller's fault)
        ├── ProviderBadRequestError(upstream 400/404/422: the request itself is wrong)
        ├── ProviderRateLimitedError (upstream 429)
        ├── ProviderUnavailableError (upstream 5xx, 529 overloaded, connection failures)
        ├── ContentFilteredError   (upstream refused the content)
        └── ProviderTimeoutError   (connect or read timeout)
"""

from __future__ import annotations

from typing import ClassVar

__all__ = [
    "AuthenticationError",
    "BadRequestError",
    "ConflictError",
    "ContentFilteredError",
    "GatewayError",
    "InsufficientCreditsError",
    "NotFoundError",
    "PayloadTooLargeError",
    "PermissionDeniedError",
    "ProviderAuthError",
    "ProviderBadRequestError",
    "ProviderError",
    "ProviderRateLimitedError",
    "ProviderTimeoutError",
    "ProviderUnavailableError",
    "RateLimitedError",
    "ServiceUnavailableError",
    "UnprocessableError",
]


class GatewayError(Exception):
    """Base of every error OneFlow reports to a caller."""

    status: ClassVar[int] = 500
    kind: ClassVar[str] = "internal_error"
    retryable: ClassVar[bool] = False

    def __init__(
        self,
        message: str,
        *,
        param: str | None = None,
        code: str | None = None,
        retry_after: float | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.param = param
        self.code = code
        self.retry_after = retry_after
        self.headers = dict(headers or {})

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.message!r})"


class BadRequestError(GatewayError):
    status = 400
    kind = "invalid_request"


class NotFoundError(BadRequestError):
    status = 404
    kind = "not_found"


class AuthenticationError(GatewayError):
    status = 401
    kind = "authentication"


class PermissionDeniedError(GatewayError):
    status = 403
    kind = "permission"


class ConflictError(GatewayError):
    status = 409
    kind = "conflict"


class UnprocessableError(GatewayError):
    status = 422
    kind = "invalid_request"


class PayloadTooLargeError(GatewayError):
    status = 413
    kind = "request_too_large"


class RateLimitedError(GatewayError):
    status = 429
    kind = "rate_limited"


class InsufficientCreditsError(GatewayError):
    status = 402
    kind = "insufficient_credits"


class ServiceUnavailableError(GatewayError):
    status = 503
    kind = "unavailable"
    retryable = True


class ProviderError(GatewayError):
    """An upstream provider failed; `provider` and `upstream_status` say where and how."""

    status = 502
    kind = "provider_error"
    #: The provider's own verdict on retrying (its `x-should-retry` header), when it gave one.
    should_retry: bool | None = None

    def __init__(
        self,
        message: str,
        *,
        provider: str = "",
        model: str | None = None,
        upstream_status: int | None = None,
        param: str | None = None,
        code: str | None = None,
        retry_after: float | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message, param=param, code=code, retry_after=retry_after, headers=headers)
        self.provider = provider
        self.model = model
        self.upstream_status = upstream_status


class ProviderAuthError(ProviderError):
    status = 502
    kind = "provider_auth"


class ProviderBadRequestError(ProviderError):
    status = 400
    kind = "invalid_request"


class ProviderRateLimitedError(ProviderError):
    status = 429
    kind = "rate_limited"
    retryable = True


class ProviderUnavailableError(ProviderError):
    status = 503
    kind = "overloaded"
    retryable = True


class ContentFilteredError(ProviderError):
    status = 400
    kind = "content_filtered"


class ProviderTimeoutError(ProviderError):
    status = 504
    kind = "timeout"
    retryable = True
