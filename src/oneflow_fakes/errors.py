"""Each provider's error answers: status, body shape, headers.

A fault names an error by status, by `error_type` (the provider's own discriminator: OpenAI's
`error.code`, else its `error.type`; Anthropic's `error.type`; Stability's `name`;
ElevenLabs' `detail.status`), or both. With only a type, the status is that type's usual one;
with only a status, the type is that status's usual one. `ErrorKinds` (`error_kinds.py`)
works that out the same way for every provider from its table here; each provider's function
then shapes the body its clients expect.
"""

from __future__ import annotations

import time

from oneflow_fakes.error_kinds import ErrorAnswer, ErrorKinds, words

__all__ = [
    "ErrorAnswer",
    "anthropic_error",
    "elevenlabs_error",
    "openai_error",
    "stability_error",
]


# ---- OpenAI -----------------------------------------------------------------------------

# error_type -> (status, type, code, param, message); "{model}" is filled in.
_OPENAI: dict[str, tuple[int, str, str | None, str | None, str]] = {
    "invalid_request_error": (400, "invalid_request_error", None, None, "Invalid request."),
    "context_length_exceeded": (
        400,
        "invalid_request_error",
        "context_length_exceeded",
        "messages",
        "This model's maximum context length is {context} tokens. However, your messages "
        "resulted in {tokens} tokens. Please reduce the length of the messages.",
    ),
    "content_policy_violation": (
        400,
        "invalid_request_error",
        "content_policy_violation",
        None,
        "Your request was rejected as a result of our safety system. Your prompt may contain "
        "text that is not allowed by our safety system.",
    ),
    "invalid_api_key": (
        401,
        "invalid_request_error",
        "invalid_api_key",
        None,
        "Incorrect API key provided: {key}. You can find your API key at "
        "https://platform.openai.com/account/api-keys.",
    ),
    "missing_api_key": (
        401,
        "invalid_request_error",
        None,
        None,
        "You didn't provide an API key. You need to provide your API key in an Authorization "
        "header using Bearer auth (i.e. Authorization: Bearer YOUR_KEY), or as the password "
        "field (with blank username) if you're accessing the API from your browser and are "
        "prompted for a username and password. You can obtain an API key from "
        "https://platform.openai.com/account/api-keys.",
    ),
    "unsupported_country_region_territory": (
        403,
        "request_forbidden",
        "unsupported_country_region_territory",
        None,
        "Country, region, or territory not supported",
    ),
    "model_not_found": (
        404,
        "invalid_request_error",
        "model_not_found",
        None,
        "The model `{model}` does not exist or you do not have access to it.",
    ),
    "rate_limit_exceeded": (
        429,
        "requests",
        "rate_limit_exceeded",
        None,
        "Rate limit reached for {model} in organization org-fake on requests per min (RPM): "
        "Limit 500, Used 500, Requested 1. Please try again in 120ms. Visit "
        "https://platform.openai.com/account/rate-limits to learn more.",
    ),
    "insufficient_quota": (
        429,
        "insufficient_quota",
        "insufficient_quota",
        None,
        "You exceeded your current quota, please check your plan and billing details. For "
        "more information on this error, read the docs: "
        "https://platform.openai.com/docs/guides/error-codes/api-errors.",
    ),
    "server_error": (
        500,
        "server_error",
        None,
        None,
        "The server had an error while processing your request. Sorry about that!",
    ),
    "service_unavailable": (
        503,
        "server_error",
        None,
        None,
        "The engine is currently overloaded, please try again later",
    ),
}
_OPENAI_BY_STATUS = {
    400: "invalid_request_error",
    401: "invalid_api_key",
    403: "unsupported_country_region_territory",
    404: "model_not_found",
    429: "rate_limit_exceeded",
    500: "server_error",
    502: "service_unavailable",
    503: "service_unavailable",
    504: "service_unavailable",
}


def openai_error(
    status: int | None,
    error_type: str | None = None,
    message: str | None = None,
    *,
    retry_after: float | None = None,
    param: str | None = None,
    **fill: object,
) -> ErrorAnswer:
    """An OpenAI `{"error": {message, type, param, code}}` answer."""
    error = _OPENAI_KINDS.resolve(status, error_type, message, retry_after, fill)
    unknown = (error.error_type, error.error_type, None)  # its own type and code
    kind, code, known_param = _OPENAI_WIRE.get(error.error_type, unknown)
    wire = {"message": error.message, "type": kind, "param": param or known_param, "code": code}
    return ErrorAnswer(error.status, {"error": wire}, error.headers)


_OPENAI_EXHAUSTED = {
    "x-ratelimit-limit-requests": "500",
    "x-ratelimit-limit-tokens": "30000",
    "x-ratelimit-remaining-requests": "0",
    "x-ratelimit-remaining-tokens": "0",
    "x-ratelimit-reset-requests": "120ms",
    "x-ratelimit-reset-tokens": "1s",
}


_OPENAI_KINDS = ErrorKinds(
    {name: (entry[0], entry[4]) for name, entry in _OPENAI.items()},
    _OPENAI_BY_STATUS,
    "invalid_request_error",
    "server_error",
    unknown=lambda error_type: words(error_type).capitalize() + ".",
    rate_limited=lambda: dict(_OPENAI_EXHAUSTED),
)
#: error_type -> the body's (type, code, param)
_OPENAI_WIRE = {name: (entry[1], entry[2], entry[3]) for name, entry in _OPENAI.items()}


def openai_stream_error(error_type: str | None, message: str | None) -> dict[str, object]:
    """The in-stream error payload (`data: {"error": {...}}`)."""
    return openai_error(500 if error_type is None else None, error_type, message).body


# ---- Anthropic --------------------------------------------------------------------------

_ANTHROPIC: dict[str, tuple[int, str]] = {
    "invalid_request_error": (400, "Invalid request."),
    "authentication_error": (401, "invalid x-api-key"),
    "billing_error": (
        402,
        "Your credit balance is too low to access the Anthropic API. Please go to Plans & "
        "Billing to upgrade or purchase credits.",
    ),
    "permission_error": (
        403,
        "Your API key does not have permission to use the specified resource.",
    ),
    "not_found_error": (404, "model: {model}"),
    "request_too_large": (413, "Request exceeds the maximum allowed number of bytes."),
    "rate_limit_error": (
        429,
        "Number of request tokens has exceeded your per-minute rate limit "
        "(https://docs.anthropic.com/en/api/rate-limits); see the response headers for current "
        "usage. Please reduce the prompt length or the maximum tokens requested, or try again "
        "later.",
    ),
    "api_error": (500, "Internal server error"),
    "timeout_error": (504, "Request timed out"),
    "overloaded_error": (529, "Overloaded"),
}
_ANTHROPIC_BY_STATUS = {
    400: "invalid_request_error",
    401: "authentication_error",
    402: "billing_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    500: "api_error",
    504: "timeout_error",
    529: "overloaded_error",
}


def _anthropic_exhausted() -> dict[str, str]:
    reset = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() + 60))
    return {
        "anthropic-ratelimit-requests-limit": "50",
        "anthropic-ratelimit-requests-remaining": "0",
        "anthropic-ratelimit-requests-reset": reset,
        "anthropic-ratelimit-tokens-limit": "40000",
        "anthropic-ratelimit-tokens-remaining": "0",
        "anthropic-ratelimit-tokens-reset": reset,
    }


_ANTHROPIC_KINDS = ErrorKinds(
    _ANTHROPIC,
    _ANTHROPIC_BY_STATUS,
    "invalid_request_error",
    "api_error",
    rate_limited=_anthropic_exhausted,
)


def anthropic_error(
    status: int | None,
    error_type: str | None = None,
    message: str | None = None,
    *,
    retry_after: float | None = None,
    request_id: str = "",
    **fill: object,
) -> ErrorAnswer:
    """An Anthropic `{"type": "error", "error": {type, message}, "request_id"}` answer."""
    error = _ANTHROPIC_KINDS.resolve(status, error_type, message, retry_after, fill)
    body: dict[str, object] = {
        "type": "error",
        "error": {"type": error.error_type, "message": error.message},
    }
    if request_id:
        body["request_id"] = request_id
    return ErrorAnswer(error.status, body, error.headers)


# ---- Stability --------------------------------------------------------------------------

_STABILITY: dict[str, tuple[int, str]] = {
    "bad_request": (400, "bad request"),
    "invalid_samples": (400, "samples must be 1 when the Accept header is image/png"),
    "invalid_height_or_width": (400, "height and width must be specified together"),
    "invalid_prompts": (400, "text_prompts: is required"),
    "unauthorized": (401, "missing authorization header"),
    "payment_required": (402, "You lack sufficient credits to make this request."),
    "permission_denied": (403, "You do not have permission to access this resource"),
    "content_moderation": (
        403,
        "Your request was flagged by our content moderation system, as a result your request "
        "was denied and you were not charged.",
    ),
    "not_found": (404, "The specified engine (ID {model}) was not found."),
    "payload_too_large": (413, "Your request was larger than 10MiB."),
    "request_rejected": (422, "Your request was rejected."),
    "rate_limit_exceeded": (
        429,
        "You have exceeded the rate limit of 150 requests within a 10 second period.",
    ),
    "server_error": (500, "An unexpected server error occurred, please try again."),
}
_STABILITY_BY_STATUS = {
    400: "bad_request",
    401: "unauthorized",
    402: "payment_required",
    403: "content_moderation",
    404: "not_found",
    413: "payload_too_large",
    422: "request_rejected",
    429: "rate_limit_exceeded",
    500: "server_error",
}


_STABILITY_KINDS = ErrorKinds(_STABILITY, _STABILITY_BY_STATUS, "bad_request", "server_error")


def stability_error(
    status: int | None,
    error_type: str | None = None,
    message: str | None = None,
    *,
    v2: bool,
    error_id: str,
    retry_after: float | None = None,
    **fill: object,
) -> ErrorAnswer:
    """Stability's v1 `{id, name, message}` or v2beta `{id, name, errors: [...]}` answer."""
    if error_type is None and status == 403 and not v2:
        error_type = "permission_denied"  # v1 has no content moderation
    error = _STABILITY_KINDS.resolve(status, error_type, message, retry_after, fill)
    body: dict[str, object] = {"id": error_id, "name": error.error_type}
    body.update({"errors": [error.message]} if v2 else {"message": error.message})
    return ErrorAnswer(error.status, body, error.headers)


# ---- ElevenLabs -------------------------------------------------------------------------

_ELEVENLABS: dict[str, tuple[int, str]] = {
    "invalid_request": (400, "Invalid request."),
    "invalid_api_key": (401, "Invalid API key"),
    "quota_exceeded": (
        401,
        "This request exceeds your quota. You have 0 credits remaining, while {cost} credits "
        "are required for this request.",
    ),
    "missing_permissions": (
        401,
        "The API key you used is missing the permission text_to_speech to execute this operation.",
    ),
    "voice_not_found": (404, "A voice with the voice_id {voice_id} was not found."),
    "model_not_found": (400, "A model with the model_id {model} was not found."),
    "too_many_concurrent_requests": (
        429,
        "Too many concurrent requests. Your current subscription is associated with a maximum "
        "of 2 concurrent requests.",
    ),
    "system_busy": (
        429,
        "We are currently experiencing a high volume of requests. Please try again later.",
    ),
    "internal_server_error": (500, "An internal server error occurred."),
    "service_unavailable": (503, "The service is temporarily unavailable."),
}
_ELEVENLABS_BY_STATUS = {
    400: "invalid_request",
    401: "invalid_api_key",
    404: "voice_not_found",
    429: "too_many_concurrent_requests",
    500: "internal_server_error",
    503: "service_unavailable",
}


_ELEVENLABS_KINDS = ErrorKinds(
    _ELEVENLABS, _ELEVENLABS_BY_STATUS, "invalid_request", "internal_server_error"
)


def elevenlabs_error(
    status: int | None,
    error_type: str | None = None,
    message: str | None = None,
    *,
    retry_after: float | None = None,
    **fill: object,
) -> ErrorAnswer:
    """ElevenLabs' `{"detail": {"status", "message"}}` answer."""
    error = _ELEVENLABS_KINDS.resolve(status, error_type, message, retry_after, fill)
    detail = {"status": error.error_type, "message": error.message}
    return ErrorAnswer(error.status, {"detail": detail}, error.headers)


def elevenlabs_validation_error(field_name: str) -> ErrorAnswer:
    """FastAPI-style 422 for a missing body field."""
    detail = [{"loc": ["body", field_name], "msg": "field required", "type": "value_error.missing"}]
    return ErrorAnswer(422, {"detail": detail})
