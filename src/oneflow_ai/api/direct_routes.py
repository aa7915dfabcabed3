"""The model endpoints: one table, served by a small router of their own, documented as
FastAPI routes.

`MODEL_ENDPOINTS` declares each model endpoint once: its method and path, the function that
answers it, its body (the table that checks and documents it, `api/body_schema.py`) and its
answer's shape. From that table come both

- `router`: the FastAPI routes, for what FastAPI does well and costs nothing per request (the
  OpenAPI document, 405 for another method on the same path, the route's template);
- `DirectRoutes`: the middleware that dispatches these endpoints. A request for one goes from
  the middleware straight to its function. FastAPI's route would match it against the route
  list, wrap it for dependency solving (there is nothing to solve: these endpoints take the
  request alone and authenticate themselves), open an exit stack and pass the exception
  middleware; together that costs more CPU than authenticating, limiting and routing the
  request (`bench/gateway_cpu.py`).

Nothing else differs from a FastAPI route: ``scope["route"]`` is set as FastAPI sets it
(metrics and spans are labelled with the route's template), and a `GatewayError` leaves in the
caller's dialect exactly as the app's exception handler answers it. Any other exception goes
up to the edge middleware, as it does from a FastAPI route. An endpoint added to the table is
served, documented and labelled with no other change.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from fastapi import APIRouter
from fastapi.routing import APIRoute
from pydantic import BaseModel
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

from oneflow_ai.api import anthropic_compat, openai_compat
from oneflow_ai.api.anthropic_request import MESSAGES_REQUEST
from oneflow_ai.api.body_schema import Obj
from oneflow_ai.api.errors import dialect_for_path, error_response
from oneflow_ai.api.openai_chat_request import CHAT_COMPLETION_REQUEST
from oneflow_ai.api.schemas import ChatCompletionResponse, MessagesResponse, request_body
from oneflow_ai.errors import GatewayError

__all__ = ["MODEL_ENDPOINTS", "DirectRoutes", "ModelEndpoint", "router"]

Endpoint = Callable[[Request], Awaitable[Response]]
_STREAMS: dict[int | str, dict[str, Any]] = {200: {"content": {"text/event-stream": {}}}}


@dataclass(frozen=True, slots=True)
class ModelEndpoint:
    method: str
    path: str
    endpoint: Endpoint
    summary: str
    tag: str
    body: Obj
    answer: type[BaseModel]


MODEL_ENDPOINTS: tuple[ModelEndpoint, ...] = (
    ModelEndpoint(
        "POST",
        "/v1/chat/completions",
        openai_compat.chat_completions,
        summary="Chat completion on any text model (OpenAI dialect)",
        tag="OpenAI-compatible",
        body=CHAT_COMPLETION_REQUEST,
        answer=ChatCompletionResponse,
    ),
    ModelEndpoint(
        "POST",
        "/v1/messages",
        anthropic_compat.messages,
        summary="A message from any text model (Anthropic dialect)",
        tag="Anthropic-compatible",
        body=MESSAGES_REQUEST,
        answer=MessagesResponse,
    ),
)

router = APIRouter()
for _entry in MODEL_ENDPOINTS:
    router.add_api_route(
        _entry.path,
        _entry.endpoint,
        methods=[_entry.method],
        summary=_entry.summary,
        tags=[_entry.tag],
        response_model=_entry.answer,
        openapi_extra=request_body(_entry.body),
        responses=_STREAMS,
    )


class DirectRoutes:
    """Dispatches the endpoints of `MODEL_ENDPOINTS` (as the routes of `router`) straight to
    their functions; any other request goes on to the app."""

    def __init__(self, app: ASGIApp) -> None:
        self._app = app
        self._routes = {
            (method, route.path): route
            for route in router.routes
            if isinstance(route, APIRoute)
            for method in route.methods or ()
        }

    @property
    def served(self) -> frozenset[tuple[str, str]]:
        """The (method, path) pairs this router answers."""
        return frozenset(self._routes)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        route = (
            self._routes.get((scope["method"], scope["path"])) if scope["type"] == "http" else None
        )
        if route is None:
            await self._app(scope, receive, send)
            return
        scope["route"] = route
        scope["endpoint"] = route.endpoint
        request = Request(scope, receive, send)
        try:
            response = await route.endpoint(request)
        except GatewayError as exc:
            response = error_response(exc, dialect_for_path(scope["path"]))
        await response(scope, receive, send)
