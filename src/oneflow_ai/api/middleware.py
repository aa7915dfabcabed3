"""The edge middleware: one pure-ASGI layer for what every HTTP request needs.

- a request id of the gateway's own, new for every request (`X-OneFlow-Request-ID`): the id
  the pipeline, the ledger and the usage records key on, bound into the log context and
  `scope["state"]["request_id"]`. The caller's `X-Request-ID` (when sane) is echoed back and
  logged as `client_request_id`, never trusted as a key: callers reuse theirs. Without one,
  `X-Request-ID` is the gateway's id;
- security headers on every response (a looser CSP on the API docs pages so they render, the
  console's own on `/console`), and
  the `X-RateLimit-*` headers the limiter decided for this request and `X-OneFlow-Cache`;
- the request-size limit: 413 from the `Content-Length` alone, before the body is read, or as
  soon as a chunked body passes the limit, so a large body never sits in memory;
- one structured log line per request (method, path, status, duration, request id; for a
  model call also the model asked for and the one that answered, provider, tokens, credits and
  fallbacks: `api/call_log.py`);
- HTTP metrics (``http_requests_total``, ``http_request_duration_seconds`` by method, route
  template and status; requests in flight) and the request's server span with the caller's
  ``traceparent`` as parent, both through no-op objects when switched off;
- the last resort for an unexpected exception: a 500 in the caller's dialect, logged.

One layer instead of a stack of `BaseHTTPMiddleware`s keeps the per-request cost to a few
microseconds, which matters on the gateway's hot path.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterable
from typing import Any, Final

import orjson
import structlog
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from oneflow_ai.api.call_log import CALL_STATE, add_call_fields
from oneflow_ai.api.deps import cache_headers, rate_limit_headers
from oneflow_ai.api.errors import dialect_for_path, error_body
from oneflow_ai.domain.ids import time_ordered_hex
from oneflow_ai.observability.labels import UNMATCHED_ROUTE
from oneflow_ai.observability.logging import info_line
from oneflow_ai.observability.metrics import HttpMetrics, NoopMetrics
from oneflow_ai.observability.tracing import NoopTracing, ServerRequest, TracingApi

__all__ = ["EdgeMiddleware", "route_template", "security_headers", "server_request"]

log = structlog.get_logger("oneflow.access")

_NO_FASTAPI: Final[dict[str, Any]] = {}
_REQUEST_ID_OK = re.compile(rb"^[A-Za-z0-9._:\-]{1,128}$")
_DOCS_PATHS = ("/docs", "/redoc")

_API_CSP = "default-src 'none'; frame-ancestors 'none'; base-uri 'none'"
_CONSOLE_PATH = "/console"
# The console: its own scripts, styles, images and API only; no inline script or style.
_CONSOLE_CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; font-src 'self'; manifest-src 'self'; base-uri 'none'; "
    "form-action 'self'; frame-ancestors 'none'; require-trusted-types-for 'script'"
)
_DOCS_CSP = (
    "default-src 'self'; "
    "script-src 'self' 'unsafe-inline' https://cdn.jsdelivr.net; "
    "style-src 'self' 'unsafe-inline' https://cdn.jsdelivr.net https://fonts.googleapis.com; "
    "font-src 'self' https://fonts.gstatic.com; "
    "img-src 'self' data: https://fastapi.tiangolo.com https://cdn.jsdelivr.net; "
    "connect-src 'self'; worker-src 'self' blob:; frame-ancestors 'none'"
)


def security_headers(*, hsts: bool = True) -> list[tuple[bytes, bytes]]:
    headers = [
        (b"x-content-type-options", b"nosniff"),
        (b"x-frame-options", b"DENY"),
        (b"x-xss-protection", b"1; mode=block"),
        (b"referrer-policy", b"strict-origin-when-cross-origin"),
    ]
    if hsts:
        headers.append((b"strict-transport-security", b"max-age=31536000; includeSubDomains"))
    return headers


class _BodyTooLarge(StarletteHTTPException):
    """Raised from `receive` once a body passes the limit. An HTTPException, because FastAPI
    re-raises those while reading a body (any other exception would become a 400)."""

    def __init__(self, limit: int) -> None:
        super().__init__(413, f"Request body exceeds the limit of {limit} bytes")


#: What a disabled tracer is handed: it reads nothing of the request.
_UNTRACED: Final = ServerRequest(method="", path="", request_id="")


def server_request(scope: Scope, request_id: str) -> ServerRequest:
    """What the request's server span records, read off the ASGI scope (the tracing below
    api/ sees no ASGI object): the caller's ``traceparent`` / ``tracestate`` and the
    request line."""
    trace_headers: dict[str, str] = {}
    for name, value in scope["headers"]:
        if name == b"traceparent" or name == b"tracestate":
            trace_headers[name.decode()] = value.decode("latin-1")
    return ServerRequest(
        method=scope["method"],
        path=scope["path"],
        request_id=request_id,
        scheme=scope.get("scheme", "http"),
        http_version=scope.get("http_version", "1.1"),
        trace_headers=trace_headers,
    )


class EdgeMiddleware:
    def __init__(
        self,
        app: ASGIApp,
        *,
        max_body_size: int,
        log_requests: bool = True,
        hsts: bool = True,
        extra_headers: Iterable[tuple[bytes, bytes]] = (),
        id_factory: Callable[[], str] = time_ordered_hex,
        http_metrics: HttpMetrics | None = None,
        tracing: TracingApi | None = None,
    ) -> None:
        self.app = app
        self._metrics = http_metrics if http_metrics is not None else NoopMetrics().http
        self._tracing = tracing if tracing is not None else NoopTracing()
        self.max_body_size = max_body_size
        self.log_requests = log_requests
        self._headers = [*security_headers(hsts=hsts), *extra_headers]
        self._api_csp = (b"content-security-policy", _API_CSP.encode())
        self._docs_csp = (b"content-security-policy", _DOCS_CSP.encode())
        self._console_csp = (b"content-security-policy", _CONSOLE_CSP.encode())
        self._new_id = id_factory

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started_at = time.perf_counter()
        path: str = scope["path"]
        request_id = self._new_id()
        declared, client_id = _read_headers(scope)
        state = _bind_request_ids(scope, request_id, client_id)
        timing = self._metrics.request_started()
        tracing = self._tracing
        server_span = tracing.server_span(
            server_request(scope, request_id) if tracing.enabled else _UNTRACED
        )
        error: Exception | None = None
        extra = self._response_headers(path, request_id, client_id)
        status = 0
        overflow: list[bool] = []  # set by the limited receive once the body passes the limit

        async def send_with_headers(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                # X-RateLimit-* decided by the limiter during the request (api/deps.py).
                limited = rate_limit_headers(scope["state"])
                cached = cache_headers(scope["state"])  # X-OneFlow-Cache (gateway/cache_hook.py)
                message["headers"] = [*message.get("headers", ()), *extra, *limited, *cached]
                if overflow:  # the unread rest of the body stays on the wire: do not reuse it
                    message["headers"].append((b"connection", b"close"))
            await send(message)

        try:
            if declared is not None and declared > self.max_body_size:
                status = 413
                await self._send_error(send_with_headers, path, 413, self._too_large(path))
                return
            await self.app(scope, self._limited(receive, overflow), send_with_headers)
        except _BodyTooLarge:
            if status == 0:
                await self._send_error(send_with_headers, path, 413, self._too_large(path))
        except Exception as exc:
            error = exc
            log.error("unhandled_error", method=scope["method"], path=path, exc_info=exc)
            if status != 0:
                raise
            await self._send_error(send_with_headers, path, 500, _internal_error(path))
        finally:
            elapsed = time.perf_counter() - started_at
            route = route_template(scope)
            self._metrics.request_finished(timing, scope["method"], route, status or 500, elapsed)
            server_span.finish(route, status or 500, error)
            self._log_request(scope, state, path, status or 500, elapsed)

    def _response_headers(
        self, path: str, request_id: str, client_id: str | None
    ) -> list[tuple[bytes, bytes]]:
        """The headers every answer carries: the request ids, security headers and the CSP."""
        return [
            (b"x-request-id", (client_id or request_id).encode()),
            (b"x-oneflow-request-id", request_id.encode()),
            *self._headers,
            self._csp(path),
        ]

    def _log_request(
        self, scope: Scope, state: dict[str, Any], path: str, status: int, elapsed: float
    ) -> None:
        """The access line (with the model call's fields: api/call_log.py), and the call let go."""
        call = state.pop(CALL_STATE, None)  # (the call holds the state: let both go)
        if self.log_requests:
            fields: dict[str, Any] = {
                "method": scope["method"],
                "path": path,
                "status": status,
                "duration_ms": round(elapsed * 1000, 3),
            }
            if call is not None:
                add_call_fields(fields, call)
            info_line("oneflow.access")("request", fields)

    def _csp(self, path: str) -> tuple[bytes, bytes]:
        if path.startswith(_DOCS_PATHS):
            return self._docs_csp
        if path.startswith(_CONSOLE_PATH):
            return self._console_csp
        return self._api_csp

    def _limited(self, receive: Receive, overflow: list[bool]) -> Receive:
        limit = self.max_body_size
        seen = 0

        async def limited_receive() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > limit:
                    overflow.append(True)
                    raise _BodyTooLarge(limit)
            return message

        return limited_receive

    def _too_large(self, path: str) -> dict[str, object]:
        return error_body(
            dialect_for_path(path),
            kind="request_too_large",
            message=f"Request body exceeds the limit of {self.max_body_size} bytes",
        )

    @staticmethod
    async def _send_error(send: Send, path: str, status: int, body: dict[str, object]) -> None:
        payload = orjson.dumps(body)
        headers = [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(payload)).encode()),
        ]
        if status == 413:  # the unread body stays on the wire: do not reuse the connection
            headers.append((b"connection", b"close"))
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": payload})


def route_template(scope: Scope) -> str:
    """The matched route's template (``/v1/models/{model}``), or ``unmatched``: raw paths never
    become metric labels.

    FastAPI keeps the route as declared in ``scope["route"]``, without the prefixes of the
    routers that include it; the template it actually matched (prefixes included) is in its
    effective route context, preferred when present.
    """
    effective = scope.get("fastapi", _NO_FASTAPI).get("effective_route_context")
    path = getattr(effective, "path_format", None)
    if isinstance(path, str) and path:
        return path
    route = scope.get("route")
    if route is not None:
        path = getattr(route, "path_format", None) or getattr(route, "path", None)
        if isinstance(path, str) and path:
            return path
    return UNMATCHED_ROUTE


def _read_headers(scope: Scope) -> tuple[int | None, str | None]:
    """The declared `Content-Length` (None when absent or not a number) and the caller's
    `X-Request-ID` when it is sane (echoed and logged, never a key), in one pass over the
    headers: the first of each counts."""
    length: int | None = None
    client_id: str | None = None
    seen_length = seen_id = False
    for name, value in scope["headers"]:
        if name == b"content-length" and not seen_length:
            seen_length = True
            try:
                length = int(value)
            except ValueError:
                length = None
        elif name == b"x-request-id" and not seen_id:
            seen_id = True
            client_id = value.decode() if _REQUEST_ID_OK.match(value) else None
    return length, client_id


def _bind_request_ids(scope: Scope, request_id: str, client_id: str | None) -> dict[str, Any]:
    """The request's ids into `scope["state"]` (returned) and the log context."""
    state: dict[str, Any] = scope.setdefault("state", {})
    state["request_id"] = request_id
    structlog.contextvars.clear_contextvars()
    if client_id is None:
        structlog.contextvars.bind_contextvars(request_id=request_id)
    else:
        state["client_request_id"] = client_id
        structlog.contextvars.bind_contextvars(request_id=request_id, client_request_id=client_id)
    return state


def _internal_error(path: str) -> dict[str, object]:
    """The 500 in the caller's dialect for an exception no one handled."""
    return error_body(
        dialect_for_path(path),
        kind="internal_error",
        message="Internal error; X-OneFlow-Request-ID identifies it in the logs",
    )
