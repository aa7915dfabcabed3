"""The services one gateway process runs on, built once in the app's lifespan.

Nothing here is global: `create_app` builds a `Services` from its settings, keeps it in the
application state, and closes it at shutdown. Tests build one per app with their own settings.
"""

from __future__ import annotations

from contextlib import AsyncExitStack
from dataclasses import dataclass, field

from redis.asyncio import Redis
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from oneflow_ai.auth.identity import Identity
from oneflow_ai.billing.ledger import Ledger, LedgerConfig
from oneflow_ai.billing.pricing import PricingEngine
from oneflow_ai.catalog import load_catalog
from oneflow_ai.limits import RateLimiter, build_rate_limiter
from oneflow_ai.observability.logging import Redactor
from oneflow_ai.observability.telemetry import Telemetry
from oneflow_ai.settings import Settings
from oneflow_ai.storage.database import create_engine, create_sessionmaker
from oneflow_ai.storage.redis import create_redis

__all__ = ["Services"]


@dataclass
class Services:
    settings: Settings
    engine: AsyncEngine
    sessionmaker: async_sessionmaker[AsyncSession]
    redis: Redis | None
    redactor: Redactor
    telemetry: Telemetry
    # Who is calling (keys, tokens, users, projects) and how much they may (rate limits).
    identity: Identity
    limiter: RateLimiter
    # Credits: prices, reservations, charges, budgets and usage records.
    pricing: PricingEngine
    ledger: Ledger
    exit_stack: AsyncExitStack = field(default_factory=AsyncExitStack)

    @classmethod
    async def start(
        cls,
        settings: Settings,
        redactor: Redactor | None = None,
        telemetry: Telemetry | None = None,
    ) -> Services:
        redactor = redactor or Redactor(settings.secret_values)
        if telemetry is None:
            telemetry = Telemetry.from_settings(settings, redactor=redactor)
        engine = create_engine(
            settings.effective_database_url,
            pool_size=settings.database_pool_size,
            echo=settings.database_echo,
        )
        redis = create_redis(settings.redis_url) if settings.redis_url else None
        sessionmaker = create_sessionmaker(engine)
        pricing = PricingEngine(load_catalog(settings.catalog_path))
        services = cls(
            settings=settings,
            engine=engine,
            sessionmaker=sessionmaker,
            redis=redis,
            redactor=redactor,
            telemetry=telemetry,
            identity=Identity.build(settings, sessionmaker, redis),
            limiter=build_rate_limiter(settings, redis),
            pricing=pricing,
            ledger=Ledger(engine, pricing, LedgerConfig.from_settings(settings)),
        )
        # Closed last: spans of the shutdown itself are still exported.
        services.exit_stack.callback(telemetry.close)
        telemetry.metrics.watch_pool(engine)
        services.exit_stack.push_async_callback(engine.dispose)
        if redis is not None:
            services.exit_stack.push_async_callback(redis.aclose)
        services.exit_stack.push_async_callback(services.limiter.close)
        await services.identity.start()
        services.exit_stack.push_async_callback(services.identity.close)
        # Started last, closed first: the ledger commits what is queued while the engine lives.
        # It does not wait for the database: its first round of maintenance reconciles the
        # reservations a crashed process left, and limited requests wait for that round.
        await services.ledger.start()
        services.exit_stack.push_async_callback(services.ledger.close)
        return services

    async def close(self) -> None:
        await self.exit_stack.aclose()
