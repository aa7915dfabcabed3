"""The services one gateway process runs on, built once in the app's lifespan.

Nothing here is global: `create_app` builds a `Services` from its settings, keeps it in the
application state, and closes it at shutdown. Tests build one per app with their own settings.
"""

from __future__ import annotations

import asyncio
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import structlog
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from oneflow_ai.auth.identity import Identity
from oneflow_ai.billing.estimates import Estimator
from oneflow_ai.billing.ledger import Ledger
from oneflow_ai.billing.pricing import PricingEngine
from oneflow_ai.billing.tokenizer import TokenCounter
from oneflow_ai.catalog import Catalog, load_catalog
from oneflow_ai.gateway.body_log import BodyLogHook
from oneflow_ai.gateway.deployments import DeploymentCircuits, DeploymentPicker
from oneflow_ai.gateway.estimate import TokenizerEstimator
from oneflow_ai.gateway.pipeline import Pipeline
from oneflow_ai.gateway.semantic_cache import SemanticCache
from oneflow_ai.gateway.wiring import (
    PipelineParts,
    balanced_deployments,
    build_pipeline,
    cache_store_for,
    open_ledger,
    open_redis,
    report_breakers,
    resilient_clients,
    semantic_index_for,
    start_fakes,
    watch_schema,
)
from oneflow_ai.limits import RateLimiter, build_rate_limiter
from oneflow_ai.observability.logging import Redactor
from oneflow_ai.observability.telemetry import Telemetry
from oneflow_ai.providers.reachability import ProviderReachability
from oneflow_ai.providers.registry import (
    ClientFactory,
    ProviderRegistry,
    build_registry,
)
from oneflow_ai.resilience.breaker_set import CircuitBreakers
from oneflow_ai.resilience.idempotency import IdempotencyStore
from oneflow_ai.resilience.load import DeploymentLoad
from oneflow_ai.resilience.setup import build_breakers, build_idempotency_store
from oneflow_ai.routing.latency import LatencyTracker
from oneflow_ai.routing.router import IntelligentRouter
from oneflow_ai.routing.setup import build_latency_tracker, build_router
from oneflow_ai.settings import Settings
from oneflow_ai.storage.database import create_engine, create_sessionmaker
from oneflow_ai.storage.health import Health
from oneflow_ai.storage.schema import SchemaWatch

if TYPE_CHECKING:  # the fakes are imported only when they serve (development)
    from redis.asyncio import Redis

    from oneflow_fakes.demo import FakeProviders

__all__ = ["Services"]

log = structlog.get_logger("oneflow")


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
    # The models: catalog and prices, the running provider adapters, the request pipeline.
    catalog: Catalog
    pricing: PricingEngine
    estimates: Estimator
    registry: ProviderRegistry
    pipeline: Pipeline
    # Resilience and routing: circuit breakers per provider and (provider, model), latency
    # learned from completed calls, the router, and the Idempotency-Key store.
    breakers: CircuitBreakers
    latency: LatencyTracker
    router: IntelligentRouter
    idempotency: IdempotencyStore
    # Credits: reservations, charges, budgets and usage records.
    ledger: Ledger
    # The database's schema against the code's migrations (for /ready).
    schema: SchemaWatch
    # Prompts and answers of the projects that store them (the request log's bodies).
    bodies: BodyLogHook
    fake_providers: FakeProviders | None = None
    # The providers declared by configuration that run: reachable or not (/ready warns).
    reachability: ProviderReachability | None = None
    exit_stack: AsyncExitStack = field(default_factory=AsyncExitStack)

    @classmethod
    async def start(
        cls,
        settings: Settings,
        redactor: Redactor | None = None,
        telemetry: Telemetry | None = None,
        *,
        transport: ClientFactory | None = None,
    ) -> Services:
        """Build and start everything (closed by `close`). `transport` builds each provider's
        own client, under its breakers and retries (default: the pooled aiohttp client, with
        the tracing headers); tests pass an in-process one."""
        redactor = redactor or Redactor(settings.secret_values)
        if telemetry is None:
            telemetry = Telemetry.from_settings(settings, redactor=redactor)
        exit_stack = AsyncExitStack()
        # Closed last: spans of the shutdown itself are still exported.
        exit_stack.callback(telemetry.close)
        fakes: FakeProviders | None = None
        try:
            if settings.use_fake_providers:
                fakes, settings = await start_fakes(settings, exit_stack)
            stores = _open_stores(settings, telemetry, exit_stack)
            core = await _start_core(settings, stores, telemetry, transport, exit_stack)
            serving = await _start_serving(settings, stores, core, redactor, telemetry, exit_stack)
        except BaseException:
            await exit_stack.aclose()
            raise
        reachability = _check_providers(core.catalog, core.registry, exit_stack)
        return cls(
            settings=settings,
            engine=stores.engine,
            sessionmaker=stores.sessionmaker,
            redis=stores.redis,
            redactor=redactor,
            telemetry=telemetry,
            identity=core.identity,
            limiter=core.limiter,
            catalog=core.catalog,
            pricing=core.pricing,
            estimates=Estimator(core.pricing, core.counter),
            registry=core.registry,
            pipeline=serving.pipeline,
            breakers=core.breakers,
            latency=core.latency,
            router=core.router,
            idempotency=serving.idempotency,
            ledger=serving.ledger,
            schema=await watch_schema(stores.engine),
            bodies=serving.bodies,
            fake_providers=fakes,
            reachability=reachability,
            exit_stack=exit_stack,
        )

    async def close(self) -> None:
        await self.exit_stack.aclose()


# `Services.start`'s steps, in its order. Each pushes what it opened on the exit stack, so the
# stack closes them in reverse: the pipeline drains before the ledger, the breakers flush to
# Redis before it closes, the database goes last (before telemetry).


@dataclass(frozen=True, slots=True)
class _Stores:
    engine: AsyncEngine
    sessionmaker: async_sessionmaker[AsyncSession]
    redis: Redis | None
    redis_up: Health | None


@dataclass(frozen=True, slots=True)
class _Core:
    limiter: RateLimiter
    catalog: Catalog
    identity: Identity
    pricing: PricingEngine
    counter: TokenCounter
    breakers: CircuitBreakers
    latency: LatencyTracker
    load: DeploymentLoad
    registry: ProviderRegistry
    router: IntelligentRouter


@dataclass(frozen=True, slots=True)
class _Serving:
    ledger: Ledger
    bodies: BodyLogHook
    idempotency: IdempotencyStore
    pipeline: Pipeline


def _open_stores(settings: Settings, telemetry: Telemetry, exit_stack: AsyncExitStack) -> _Stores:
    """The database engine and, with REDIS_URL, Redis and its health flag."""
    engine = create_engine(
        settings.effective_database_url,
        pool_size=settings.database_pool_size,
        echo=settings.database_echo,
        connect_timeout=settings.database_connect_timeout,
        command_timeout=settings.database_command_timeout,
    )
    telemetry.metrics.watch_pool(engine)
    exit_stack.push_async_callback(engine.dispose)
    redis, redis_up = open_redis(settings, telemetry)
    if redis is not None:
        exit_stack.push_async_callback(redis.aclose)
    if redis_up is not None:
        exit_stack.push_async_callback(redis_up.close)
    return _Stores(engine, create_sessionmaker(engine), redis, redis_up)


async def _start_core(
    settings: Settings,
    stores: _Stores,
    telemetry: Telemetry,
    transport: ClientFactory | None,
    exit_stack: AsyncExitStack,
) -> _Core:
    """Limits, the catalog and identity, the breakers and latency, the providers, the router."""
    redis = stores.redis
    limiter = build_rate_limiter(settings, redis)
    exit_stack.push_async_callback(limiter.close)
    catalog = load_catalog(settings.catalog_path)
    identity = Identity.build(settings, stores.sessionmaker, redis, catalog=catalog)
    await identity.start()
    exit_stack.push_async_callback(identity.close)
    pricing = PricingEngine(catalog)
    counter = TokenCounter(catalog)
    breakers = build_breakers(settings, redis, stores.redis_up)
    report_breakers(breakers, telemetry)
    await breakers.start()
    exit_stack.push_async_callback(breakers.aclose)  # flushes to Redis: before it closes
    latency = build_latency_tracker(settings, catalog, redis)
    await latency.start()
    exit_stack.push_async_callback(latency.aclose)
    load = DeploymentLoad(tracked=balanced_deployments(catalog))
    factory = resilient_clients(settings, breakers, telemetry, transport, load)
    registry = build_registry(settings, catalog, client_factory=factory)
    exit_stack.push_async_callback(registry.aclose)
    circuits = DeploymentCircuits(DeploymentPicker(registry, breakers=breakers))
    router = build_router(settings, pricing, latency=latency, circuits=circuits)
    return _Core(
        limiter=limiter,
        catalog=catalog,
        identity=identity,
        pricing=pricing,
        counter=counter,
        breakers=breakers,
        latency=latency,
        load=load,
        registry=registry,
        router=router,
    )


async def _start_serving(
    settings: Settings,
    stores: _Stores,
    core: _Core,
    redactor: Redactor,
    telemetry: Telemetry,
    exit_stack: AsyncExitStack,
) -> _Serving:
    """The ledger, the request log's bodies, the idempotency store, and the pipeline."""
    engine = stores.engine
    ledger = await open_ledger(settings, engine, core.pricing, core.identity, telemetry, exit_stack)
    bodies = BodyLogHook(engine, redactor)
    exit_stack.push_async_callback(bodies.close)  # after the pipeline has drained
    idempotency = build_idempotency_store(settings, stores.redis, stores.redis_up)
    # Each encoding is built on its first count (25-45 MiB each, about a second, in a
    # thread: EncodingHook): a worker holds only those of the models it is asked for.
    tokens = TokenizerEstimator(core.counter)
    cache_store = cache_store_for(settings, stores.redis)
    parts = PipelineParts(
        registry=core.registry,
        pricing=core.pricing,
        tokens=tokens,
        router=core.router,
        breakers=core.breakers,
        load=core.load,
        latency=core.latency,
        limiter=core.limiter,
        ledger=ledger,
        idempotency=idempotency,
        bodies=bodies,
        cache_store=cache_store,
        semantic=SemanticCache(await semantic_index_for(settings, engine), cache_store),
    )
    pipeline = build_pipeline(settings, parts, telemetry)
    exit_stack.push_async_callback(pipeline.drain)
    return _Serving(ledger, bodies, idempotency, pipeline)


def _check_providers(
    catalog: Catalog, registry: ProviderRegistry, exit_stack: AsyncExitStack
) -> ProviderReachability:
    """Warn, in the background, of configured providers that cannot be reached, and now if
    no provider runs at all."""
    reachability = ProviderReachability(
        entry for entry in catalog.providers.values() if entry.name in registry
    )
    if reachability.providers:  # checked in the background: start-up never waits on it
        check = asyncio.get_running_loop().create_task(reachability.warn_unreachable())
        exit_stack.callback(check.cancel)
    if not registry.names:
        log.warning(
            "no_provider_configured",
            hint="set OPENAI_API_KEY, ANTHROPIC_API_KEY, STABILITY_API_KEY or "
            "ELEVENLABS_API_KEY, or FAKE_PROVIDERS=on in development",
        )
    return reachability
