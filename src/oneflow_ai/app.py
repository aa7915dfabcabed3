"""`create_app(settings)`: the FastAPI application with its middleware, routers and lifespan.

The lifespan builds the process's `Services` (database engine, Redis, upstream clients, ...)
into the application state and closes them at shutdown; nothing is global, so tests build one
app per test with settings of their own.
"""

from __future__ import annotations

import gc
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager

import structlog
from fastapi import FastAPI
from fastapi._body_limit import AppBodyLimitMiddleware
from fastapi.telemetry import TelemetryConfig
from fastapi.telemetry._asgi import ExceptionTelemetryMiddleware
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware
from starlette.middleware.errors import ServerErrorMiddleware
from starlette.types import ASGIApp, Receive, Scope, Send

from oneflow_ai import __version__, console
from oneflow_ai.api import (
    auth,
    circuits,
    credits,
    direct_routes,
    gateway_api,
    health,
    keys,
    openai_compat,
    projects,
    request_log_policy,
    requests,
    responses_api,
    root,
    self_service,
    token_counts,
    usage,
    users,
)
from oneflow_ai.api import metrics as metrics_api
from oneflow_ai.api.direct_routes import DirectRoutes
from oneflow_ai.api.errors import install_error_handlers
from oneflow_ai.api.graceful import GracefulStop, shutting_down_error
from oneflow_ai.api.idempotency import IdempotencyMiddleware
from oneflow_ai.api.middleware import EdgeMiddleware
from oneflow_ai.api.schemas import install_schemas
from oneflow_ai.gateway.services import Services
from oneflow_ai.observability.logging import Redactor, configure_logging
from oneflow_ai.observability.telemetry import Telemetry
from oneflow_ai.providers.registry import ClientFactory
from oneflow_ai.settings import Settings, load_settings
from oneflow_ai.storage.database import describe_database

__all__ = ["GatewayApp", "create_app"]

log = structlog.get_logger("oneflow")


#: Response headers a browser page on an allowed origin may read (CORS): the request ids,
#: limits, and what answered a model call and what it cost.
EXPOSED_HEADERS = (
    "X-Request-ID",
    "X-OneFlow-Request-ID",
    "Retry-After",
    "X-RateLimit-Limit",
    "X-RateLimit-Remaining",
    "X-RateLimit-Reset",
    "X-OneFlow-Model",
    "X-OneFlow-Provider",
    "X-OneFlow-Route",
    "X-OneFlow-Fallbacks",
    "X-OneFlow-Credits",
    "X-OneFlow-Ignored-Params",
    "X-OneFlow-Tokens-Exact",
    "X-OneFlow-Fake-Providers",
    "Idempotent-Replayed",
)


#: FastAPI's own OpenTelemetry spans, metrics and exception logs, off: the edge middleware
#: records the request's server span and HTTP metrics (`observability/`), and with a global
#: OpenTelemetry provider installed FastAPI would record each request a second time.
_NO_FASTAPI_TELEMETRY: TelemetryConfig = {"tracing": False, "metrics": False, "logs": False}

#: The layers FastAPI puts above the application's own middleware, and why none of them acts
#: on an HTTP request of this app: Starlette's last resort for an exception (the edge answers
#: every exception with a 500 in the caller's dialect and lets one through only once the answer
#: has started, which this layer then re-raises too), FastAPI's exception telemetry (off, above)
#: and its body limit (unset: the edge's limit applies; a limit set would be another layer).
_INERT_FRAMEWORK_LAYERS = (
    ServerErrorMiddleware,
    ExceptionTelemetryMiddleware,
    AppBodyLimitMiddleware,
)


class GatewayApp(FastAPI):
    """FastAPI, with each HTTP request handed straight to the edge middleware.

    The framework's layers above it (`_INERT_FRAMEWORK_LAYERS`) do nothing for this app's
    HTTP requests and cost a coroutine each per request; the lifespan and anything else still
    take FastAPI's whole way in. When the stack holds anything else above the edge (a layer a
    FastAPI upgrade adds, a body limit), every request takes the whole way.
    """

    _edge: ASGIApp | None = None
    #: The process's services while the lifespan runs (also `app.state.services`): read on
    #: every request (`api/deps.py`), where `app.state`'s look-up raises and catches an
    #: AttributeError inside before it finds them.
    services: Services | None = None

    def build_middleware_stack(self) -> ASGIApp:
        stack = super().build_middleware_stack()
        layer: ASGIApp = stack
        while isinstance(layer, _INERT_FRAMEWORK_LAYERS):
            layer = layer.app
        self._edge = layer if isinstance(layer, EdgeMiddleware) else None
        return stack

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        edge = self._edge  # known once the stack is built (by the lifespan or a first request)
        if edge is None or scope["type"] != "http":
            await super().__call__(scope, receive, send)
            return
        if self.root_path:  # what FastAPI and Starlette do before their layers
            scope["root_path"] = self.root_path
        scope["app"] = self
        await edge(scope, receive, send)


def create_app(
    settings: Settings | None = None,
    *,
    configure_logs: bool = True,
    telemetry: Telemetry | None = None,
    transport: ClientFactory | None = None,
) -> FastAPI:
    """Build the gateway application; with no settings they are read from the environment.

    ``telemetry`` (metrics and tracing) is built from the settings unless given; tests pass
    one with an in-memory span exporter. ``transport`` builds each provider's own client in
    place of the pooled aiohttp one (``Services.start``); tests pass an in-process one.
    """
    settings = settings if settings is not None else load_settings()
    if configure_logs:
        redactor = configure_logging(
            level=settings.log_level,
            json=settings.json_logs,
            secret_values=settings.secret_values,
        )
    else:
        redactor = Redactor(settings.secret_values)
    if telemetry is None:
        telemetry = Telemetry.from_settings(settings, redactor=redactor)

    app = GatewayApp(
        title="OneFlow AI",
        version=__version__,
        summary="One endpoint in front of OpenAI, Anthropic, Stability AI and ElevenLabs",
        lifespan=_lifespan(settings, redactor, telemetry, transport),
        telemetry=_NO_FASTAPI_TELEMETRY,
    )
    app.state.settings = settings
    # SIGTERM: /ready says draining, requests keep coming for a while, then the server stops
    # accepting, and streams still open at the end of the grace period end well (api/graceful).
    app.state.graceful = GracefulStop(
        delay=settings.shutdown_delay_seconds, grace=settings.shutdown_grace_seconds
    )
    install_error_handlers(app)
    _mount_routes(app, metrics=telemetry.metrics.enabled)
    install_schemas(app)
    for layer in reversed(_middleware(settings, telemetry)):  # each added wraps those before
        app.add_middleware(layer.cls, *layer.args, **layer.kwargs)
    return app


def _lifespan(
    settings: Settings,
    redactor: Redactor,
    telemetry: Telemetry,
    transport: ClientFactory | None,
) -> Callable[[FastAPI], AbstractAsyncContextManager[None]]:
    """The application's lifespan: start the `Services` and the graceful stop, then close them."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        services = await Services.start(settings, redactor, telemetry, transport=transport)
        app.state.services = services
        if isinstance(app, GatewayApp):
            app.services = services
        graceful: GracefulStop = app.state.graceful
        graceful.interrupt = lambda: services.pipeline.interrupt_streams(shutting_down_error())
        graceful.install()
        # What start-up built lives as long as the process: keep it out of the collector's
        # passes, which otherwise walk every module and table of the process now and then (a
        # pause of tens of milliseconds on whichever request is running).
        gc.collect()
        gc.freeze()
        log.info(
            "startup",
            version=__version__,
            environment=settings.environment.value,
            database=describe_database(settings.effective_database_url),
            schema=services.schema.last.state.value if services.schema.last else "unknown",
            redis=settings.redis_url is not None,
            metrics=telemetry.metrics.enabled,
            tracing=telemetry.tracing.enabled,
            providers=list(services.registry.names),
        )
        try:
            yield
        finally:
            graceful.uninstall()
            gc.unfreeze()
            if isinstance(app, GatewayApp):
                app.services = None
            await services.close()
            log.info("shutdown")

    return lifespan


def _mount_routes(app: FastAPI, *, metrics: bool) -> None:
    """Add every router: the model endpoints first, then health, admin and the console."""
    for router in (
        direct_routes.router,
        openai_compat.router,
        responses_api.router,
        token_counts.router,
        gateway_api.router,
    ):
        # The model endpoints join the app's own route list, first: FastAPI matches each
        # included router through an extra layer that costs microseconds per request.
        app.router.routes.extend(router.routes)
    app.include_router(health.router)
    app.include_router(root.router)
    app.include_router(circuits.router)
    if metrics:
        app.include_router(metrics_api.router)
    for router in (
        auth.router,
        keys.router,
        users.router,
        projects.router,
        usage.router,
        credits.router,
        requests.router,
        request_log_policy.router,
        self_service.router,
        console.router,
    ):
        app.include_router(router)


def _middleware(settings: Settings, telemetry: Telemetry) -> list[Middleware]:
    """The middleware, outermost first, declared in this one list.

    The edge (request id, size limit, access line, metrics, traces) sees every answer; CORS;
    idempotency (after the size limit, seeing exactly what the routes answer); innermost, the
    model endpoints straight to their functions (api/direct_routes.py).
    """
    return [
        Middleware(
            EdgeMiddleware,
            max_body_size=settings.max_request_size,
            log_requests=settings.log_requests,
            http_metrics=telemetry.metrics.http,
            tracing=telemetry.tracing,
            extra_headers=[(b"x-oneflow-fake-providers", b"true")]
            if settings.use_fake_providers
            else (),
        ),
        *(
            [
                Middleware(
                    CORSMiddleware,
                    allow_origins=settings.cors_origins,
                    allow_methods=["GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"],
                    allow_headers=["*"],
                    expose_headers=list(EXPOSED_HEADERS),
                )
            ]
            if settings.cors_origins
            else []
        ),
        Middleware(
            IdempotencyMiddleware,
            max_response_bytes=settings.idempotency_max_response_bytes,
            wait_seconds=settings.idempotency_wait_seconds,
        ),
        Middleware(DirectRoutes),
    ]
