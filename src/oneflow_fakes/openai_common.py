"""Shared by the fake OpenAI endpoints: key check, response headers, validation errors, small
JSON helpers."""

from __future__ import annotations

from aiohttp import web

from oneflow_fakes.errors import ErrorAnswer, openai_error
from oneflow_fakes.exchange import Exchange, FakeState, JsonBody, random_id

__all__ = [
    "check_openai_key",
    "missing_parameter",
    "openai_headers",
    "strings",
    "unsupported_value",
]

_HEALTHY = {
    "openai-version": "2020-10-01",
    "openai-organization": "org-fake",
    "x-ratelimit-limit-requests": "10000",
    "x-ratelimit-limit-tokens": "2000000",
    "x-ratelimit-remaining-requests": "9999",
    "x-ratelimit-remaining-tokens": "1999000",
    "x-ratelimit-reset-requests": "6ms",
    "x-ratelimit-reset-tokens": "30ms",
}


def openai_headers(remaining_requests: int | None = None) -> dict[str, str]:
    """An answer's headers; `remaining_requests` when a request limit is configured."""
    headers = dict(_HEALTHY)
    if remaining_requests is not None:
        headers["x-ratelimit-remaining-requests"] = str(remaining_requests)
        headers["x-ratelimit-reset-requests"] = "60s"
    return headers


def check_openai_key(
    request: web.Request, accepted: str | None, auth: str = "bearer"
) -> ErrorAnswer | None:
    """The 401 OpenAI answers to a missing or wrong `Authorization: Bearer` key (`auth`:
    `api-key` wants an `api-key` header instead, `none` no key: `FakeConfig.openai_auth`)."""
    if auth == "none":
        return None
    header = request.headers.get("Authorization", "")
    scheme, _, key = header.partition(" ")
    if auth == "api-key":
        scheme, key = "bearer", request.headers.get("api-key", "")
    key = key.strip()
    if scheme.lower() != "bearer" or not key:
        return openai_error(401, "missing_api_key")
    if accepted is not None and key != accepted:
        masked = f"{key[:3]}{'*' * max(len(key) - 7, 3)}{key[-4:]}"
        return openai_error(401, "invalid_api_key", key=masked)
    return None


async def open_call(
    state: FakeState, request: web.Request, body: JsonBody, *, endpoint: str, model: str
) -> tuple[Exchange, web.StreamResponse | None]:
    """The exchange of one OpenAI call (chat, Responses), and the answer that ends it before
    any work when there is one: a fault the test scripted, or a refused key."""
    exchange = Exchange(
        state,
        request,
        provider="openai",
        endpoint=endpoint,
        model=model,
        stream=body.data.get("stream") is True,
        body=body.recorded,
        request_id=random_id("req_", 32),
    )
    interfered = await exchange.interfere(openai_error, model=model or "unknown")
    if interfered is not None:
        return exchange, interfered
    refused = check_openai_key(request, state.config.api_key, state.config.openai_auth)
    return exchange, (exchange.error(refused) if refused is not None else None)


def strings(value: object) -> list[str]:
    """A string or a list of strings, as a list (anything else: empty)."""
    if isinstance(value, str):
        return [value]
    if isinstance(value, list):
        return [item for item in value if isinstance(item, str)]
    return []


def missing_parameter(param: str) -> ErrorAnswer:
    """OpenAI's 400 for a required field the body lacks."""
    return openai_error(
        400, "missing_required_parameter", f"Missing required parameter: '{param}'.", param=param
    )


def unsupported_value(
    value: object, supported: tuple[str, ...], param: str, *, sep: str = " and "
) -> ErrorAnswer:
    """OpenAI's 400 for a value outside ``supported`` (listed quoted, joined by ``sep``)."""
    listed = sep.join(f"'{choice}'" for choice in supported)
    return openai_error(
        400,
        "invalid_value",
        f"Invalid value: '{value}'. Supported values are: {listed}.",
        param=param,
    )
