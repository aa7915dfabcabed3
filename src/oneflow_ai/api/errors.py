"""Errors at the edge: `GatewayError` (and framework errors) rendered in the caller's dialect.

The dialect follows the path: `/v1/messages` speaks Anthropic's error shape
(`{"type": "error", "error": {"type", "message"}}`), everything else OpenAI's
(`{"error": {"message", "type", "param", "code"}}`). This is the only module that knows how
an error looks on the wire.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping, Sequence
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from pydantic import ValidationError
from sqlalchemy.exc import DataError, DBAPIError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import Response

from oneflow_ai.api.bodies import UNKNOWN_FIELD
from oneflow_ai.api.responses import json_response
from oneflow_ai.errors import BadRequestError, GatewayError

__all__ = [
    "Dialect",
    "dialect_for_path",
    "error_body",
    "error_response",
    "install_error_handlers",
    "validation_message",
]


class Dialect(enum.StrEnum):
    OPENAI = "openai"
    ANTHROPIC = "anthropic"


def dialect_for_path(path: str) -> Dialect:
    if path.startswith("/v1/messages") or path.startswith("/anthropic/"):
        return Dialect.ANTHROPIC
    return Dialect.OPENAI


# kind -> (OpenAI error type, OpenAI code)
_OPENAI_TYPES: dict[str, tuple[str, str | None]] = {
    "invalid_request": ("invalid_request_error", None),
    "not_found": ("invalid_request_error", "model_not_found"),
    "authentication": ("invalid_request_error", "invalid_api_key"),
    "permission": ("permission_error", "permission_denied"),
    "conflict": ("invalid_request_error", "conflict"),
    "request_too_large": ("invalid_request_error", "request_too_large"),
    "rate_limited": ("rate_limit_error", "rate_limit_exceeded"),
    "insufficient_credits": ("insufficient_quota", "insufficient_quota"),
    "content_filtered": ("invalid_request_error", "content_policy_violation"),
    "timeout": ("server_error", "upstream_timeout"),
    "overloaded": ("server_error", "upstream_unavailable"),
    "provider_auth": ("server_error", "upstream_authentication"),
    "provider_error": ("server_error", "upstream_error"),
    "unavailable": ("server_error", "service_unavailable"),
    "internal_error": ("server_error", None),
}

# kind -> Anthropic error type
_ANTHROPIC_TYPES: dict[str, str] = {
    "invalid_request": "invalid_request_error",
    "not_found": "not_found_error",
    "authentication": "authentication_error",
    "permission": "permission_error",
    "conflict": "invalid_request_error",
    "request_too_large": "request_too_large",
    "rate_limited": "rate_limit_error",
    "insufficient_credits": "billing_error",
    "content_filtered": "invalid_request_error",
    "timeout": "timeout_error",
    "overloaded": "overloaded_error",
    "provider_auth": "api_error",
    "provider_error": "api_error",
    "unavailable": "api_error",
    "internal_error": "api_error",
}


def error_body(
    dialect: Dialect,
    *,
    kind: str,
    message: str,
    param: str | None = None,
    code: str | None = None,
) -> dict[str, Any]:
    """The error object a client of `dialect` expects (also used for in-stream error events)."""
    if dialect is Dialect.ANTHROPIC:
        return {
            "type": "error",
            "error": {"type": _ANTHROPIC_TYPES.get(kind, "api_error"), "message": message},
        }
    error_type, default_code = _OPENAI_TYPES.get(kind, ("server_error", None))
    return {
        "error": {
            "message": message,
            "type": error_type,
            "param": param,
            "code": code or default_code,
        }
    }


def error_response(exc: GatewayError, dialect: Dialect) -> Response:
    body = error_body(dialect, kind=exc.kind, message=exc.message, param=exc.param, code=exc.code)
    headers = dict(exc.headers)
    if exc.retry_after is not None and "retry-after" not in {k.lower() for k in headers}:
        headers["Retry-After"] = str(max(1, round(exc.retry_after)))
    return json_response(body, exc.status, headers)


def _field_path(loc: Sequence[int | str]) -> str:
    parts = [str(p) for p in loc if p not in ("body", "query", "path", "header")]
    out = ""
    for part in parts:
        out += f"[{part}]" if part.isdigit() else (f".{part}" if out else part)
    return out


# What a body that is not a JSON object at all gets (the endpoints read JSON whatever the
# Content-Type; see api/bodies.py).
_SEND_JSON = "send a JSON object (Content-Type: application/json)"
_NOT_AN_OBJECT = {"model_attributes_type", "model_type", "dict_type"}


def validation_message(errors: Sequence[Mapping[str, Any]]) -> tuple[str, str | None]:
    """One readable line naming the first offending field, and that field's path."""
    if not errors:
        return "Invalid request body", None
    first = errors[0]
    kind = first.get("type")
    ctx = first.get("ctx") or {}
    loc = tuple(first.get("loc", ()))
    if kind == "json_invalid":
        position = f" at position {loc[-1]}" if loc and isinstance(loc[-1], int) else ""
        detail = ctx.get("error", "JSON decode error")
        return (
            f"Invalid request: the body is not valid JSON ({detail}{position}); {_SEND_JSON}",
            None,
        )
    if kind == UNKNOWN_FIELD:  # raised by the object (api/bodies.py); the field is in ctx
        loc = (*loc, str(ctx.get("field", "")))
    field = _field_path(loc) or None
    msg = str(first.get("msg", "invalid value"))
    if kind == "missing":
        msg = "field required"
    if field is None and kind in _NOT_AN_OBJECT:
        msg = f"the body must be a JSON object; {_SEND_JSON}"
    elif field is None and kind == "missing":
        msg = f"the body is empty; {_SEND_JSON}"
    text = f"Invalid request: '{field}': {msg}" if field else f"Invalid request: {msg}"
    if len(errors) > 1:
        text += f" (and {len(errors) - 1} more error{'s' if len(errors) > 2 else ''})"
    return text, field


_HTTP_KINDS = {
    401: "authentication",
    403: "permission",
    404: "not_found",
    405: "invalid_request",
    413: "request_too_large",
    429: "rate_limited",
}


def _sqlstate(exc: DBAPIError) -> str:
    """The SQLSTATE of a PostgreSQL error ("" for SQLite's, which have none)."""
    return str(getattr(exc.orig, "sqlstate", None) or getattr(exc.orig, "pgcode", None) or "")


def install_error_handlers(app: FastAPI) -> None:
    """Every error a route raises leaves in the caller's dialect (the edge middleware turns an
    unexpected exception into a 500 in the same shape)."""

    async def gateway_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, GatewayError)
        return error_response(exc, dialect_for_path(request.url.path))

    async def request_validation(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, RequestValidationError | ValidationError)
        message, field = validation_message(exc.errors())
        return error_response(
            BadRequestError(message, param=field), dialect_for_path(request.url.path)
        )

    async def http_exception(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, StarletteHTTPException)
        fallback = "invalid_request" if exc.status_code < 500 else "internal_error"
        kind = _HTTP_KINDS.get(exc.status_code, fallback)
        code = "not_found" if exc.status_code == 404 else None
        body = error_body(
            dialect_for_path(request.url.path), kind=kind, message=str(exc.detail), code=code
        )
        return json_response(body, exc.status_code, exc.headers)

    async def database_error(request: Request, exc: Exception) -> Response:
        """A value of the request the database refused (SQLSTATE class 22, "data exception":
        a NUL character PostgreSQL cannot store, a number out of its range) is the caller's
        bad input, and nothing was written; any other database error stays a server error."""
        assert isinstance(exc, DBAPIError)
        if not (isinstance(exc, DataError) or _sqlstate(exc).startswith("22")):
            raise exc
        lines = str(exc.orig).strip().splitlines()
        reason = lines[0].rsplit(">: ", 1)[-1] if lines else "out of range"
        message = f"A value of the request cannot be stored: {reason}"
        return error_response(BadRequestError(message), dialect_for_path(request.url.path))

    app.add_exception_handler(GatewayError, gateway_error)
    app.add_exception_handler(DBAPIError, database_error)
    app.add_exception_handler(RequestValidationError, request_validation)
    app.add_exception_handler(ValidationError, request_validation)
    app.add_exception_handler(StarletteHTTPException, http_exception)
