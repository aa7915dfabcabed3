"""`create_app(settings)`: the FastAPI application with its middleware, routers and lifespan.

The lifespan builds the process's `Services` (database engine, Redis, upstream clients, ...)
into the application state and closes them at shutdown; nothing is global, so tests build one
app per test with settings of their own.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import structlog
from fastapi import FastAPI
from starlette.middleware.cors import CORSMiddleware

from oneflow_ai import __version__
from oneflow_ai.api import credits, health, usage
from oneflow_ai.api.errors import install_error_handlers
from oneflow_ai.api.middleware import EdgeMiddleware
from oneflow_ai.gateway.services import Services
from oneflow_ai.observability.logging import configure_logging
from oneflow_ai.settings import Settings, load_settings

__all__ = ["create_app"]

log = structlog.get_logger("oneflow")


def create_app(settings: Settings | None = None, *, configure_logs: bool = True) -> FastAPI:
    """Build the gateway application; with no settings they are read from the environment."""
    settings = settings if settings is not None else load_settings()
    redactor = None
    if configure_logs:
        redactor = configure_logging(
            level=settings.log_level,
            json=settings.json_logs,
            secret_values=settings.secret_values,
        )

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        services = await Services.start(settings, redactor)
        app.state.services = services
        log.info(
            "startup",
            version=__version__,
            environment=settings.environment.value,
            database="sqlite" if settings.uses_embedded_database else "postgresql",
            redis=settings.redis_url is not None,
        )
        try:
            yield
        finally:
            await services.close()
            log.info("shutdown")

    app = FastAPI(
        title="OneFlow AI",
        version=__version__,
        summary="One endpoint in front of OpenAI, Anthropic, Stability AI and ElevenLabs",
        lifespan=lifespan,
    )
    app.state.settings = settings
    install_error_handlers(app)
    app.include_router(health.router)
    app.include_router(usage.router)
    app.include_router(credits.router)

    if settings.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origins,
            allow_methods=["GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"],
            allow_headers=["*"],
            expose_headers=["X-Request-ID", "Retry-After"],
        )
    app.add_middleware(
        EdgeMiddleware,
        max_body_size=settings.max_request_size,
        log_requests=settings.log_requests,
    )
    return app
