"""The model endpoints without FastAPI's per-request machinery.

A request for ``POST /v1/chat/completions`` or ``POST /v1/messages`` goes from the middleware
straight to its endpoint function. FastAPI's route would match it against the route list, wrap
it for dependency solving (there is nothing to solve: these endpoints take the request alone
and authenticate themselves), open an exit stack and pass the exception middleware; together
that costs more CPU than authenticating, limiting and routing the request.

Nothing else changes: the routes stay declared on the app (the OpenAPI document, any other
method on the same path), ``scope["route"]`` is set as FastAPI sets it (metrics and spans are
labelled with the route's template), and a `GatewayError` leaves in the caller's dialect
exactly as the app's exception handler answers it. Any other exception goes up to the edge
middleware, as it does from a FastAPI route.
"""

from __future__ import annotations

from collections.abc import Iterable

from fastapi.routing import APIRoute
from starlette.requests import Request
from starlette.types import ASGIApp, Receive, Scope, Send

from oneflow_ai.api.errors import dialect_for_path, error_response
from oneflow_ai.errors import GatewayError

__all__ = ["DirectRoutes"]


class DirectRoutes:
    def __init__(self, app: ASGIApp, routes: Iterable[APIRoute]) -> None:
        self._app = app
        self._routes = {
            (method, route.path): route for route in routes for method in route.methods or ()
        }

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
