"""The services one gateway process runs on, built once in the app's lifespan.

Nothing here is global: `create_app` builds a `Services` from its settings, keeps it in the
application state, and closes it at shutdown. Tests build one per app with their own settings.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from functools import partial
from typing import TYPE_CHECKING

import structlog
from pydantic import SecretStr
from redis.asyncio import Redis
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from oneflow_ai.auth.identity import Identity
from oneflow_ai.billing.budgets import BudgetAlert
from oneflow_ai.billing.estimates import Estimator
from oneflow_ai.billing.ledger import Ledger, LedgerConfig
from oneflow_ai.billing.pricing import PricingEngine
from oneflow_ai.billing.tokenizer import TokenCounter
from oneflow_ai.catalog import Catalog, load_catalog
from oneflow_ai.gateway.body_log import BodyLogHook
from oneflow_ai.gateway.cache_hook import CacheServer, ResponseCache
from oneflow_ai.gateway.deployments import DeploymentCircuits, DeploymentPicker
from oneflow_ai.gateway.encoding_hook import EncodingHook
from oneflow_ai.gateway.estimate import TokenizerEstimator
from oneflow_ai.gateway.feedback_hook import FeedbackHook
from oneflow_ai.gateway.ledger_hook import LedgerHook, RefusalHook
from oneflow_ai.gateway.limits_hook import RateLimitHook
from oneflow_ai.gateway.pipeline import Pipeline
from oneflow_ai.gateway.planning import select_by_router
from oneflow_ai.gateway.semantic_cache import SemanticCache, pipeline_embedder
from oneflow_ai.limits import RateLimiter, build_rate_limiter
from oneflow_ai.observability.logging import Redactor
from oneflow_ai.observability.telemetry import Telemetry
from oneflow_ai.providers.reachability import ProviderReachability
from oneflow_ai.providers.registry import (
    ClientFactory,
    ProviderRegistry,
    build_registry,
    default_client,
)
from oneflow_ai.providers.upstream import UpstreamClient
from oneflow_ai.resilience.breaker_set import CircuitBreakers
from oneflow_ai.resilience.breaker_state import CircuitState
from oneflow_ai.resilience.caller import RetryEvent
from oneflow_ai.resilience.idempotency import IdempotencyStore
from oneflow_ai.resilience.load import DeploymentLoad, LoadTrackingUpstream
from oneflow_ai.resilience.setup import build_breakers, build_caller, build_idempotency_store
from oneflow_ai.resilience.upstream_client import ResilientUpstream
from oneflow_ai.routing.latency import LatencyTracker
from oneflow_ai.routing.router import IntelligentRouter
from oneflow_ai.routing.setup import build_latency_tracker, build_router
from oneflow_ai.settings import ProviderSettings, Settings
from oneflow_ai.storage.database import create_engine, create_sessionmaker, ping
from oneflow_ai.storage.health import Health
from oneflow_ai.storage.instance import claim_instance
from oneflow_ai.storage.redis import create_redis, redis_health
from oneflow_ai.storage.response_cache import (
    MemoryResponseCache,
    RedisResponseCache,
    ResponseCacheStore,
)
from oneflow_ai.storage.schema import SchemaWatch
from oneflow_ai.storage.semantic_index import (
    MemorySemanticIndex,
    PgVectorSemanticIndex,
    SemanticIndex,
    has_pgvector,
)
from oneflow_ai.storage.spool import SettlementSpool

if TYPE_CHECKING:  # the fakes are imported only when they serve (development)
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
                fakes, settings = await _start_fakes(settings, exit_stack)
            engine = create_engine(
                settings.effective_database_url,
                pool_size=settings.database_pool_size,
                echo=settings.database_echo,
                connect_timeout=settings.database_connect_timeout,
                command_timeout=settings.database_command_timeout,
            )
            telemetry.metrics.watch_pool(engine)
            exit_stack.push_async_callback(engine.dispose)
            redis_up = _redis_health(settings, telemetry)
            redis = (
                create_redis(settings.redis_url, health=redis_up) if settings.redis_url else None
            )
            if redis is not None:
                exit_stack.push_async_callback(redis.aclose)
            if redis_up is not None:
                exit_stack.push_async_callback(redis_up.close)
            sessionmaker = create_sessionmaker(engine)
            limiter = build_rate_limiter(settings, redis)
            exit_stack.push_async_callback(limiter.close)
            catalog = load_catalog(settings.catalog_path)
            identity = Identity.build(settings, sessionmaker, redis, catalog=catalog)
            await identity.start()
            exit_stack.push_async_callback(identity.close)
            pricing = PricingEngine(catalog)
            counter = TokenCounter(catalog)
            breakers = build_breakers(settings, redis, redis_up)
            _report_breakers(breakers, telemetry)
            await breakers.start()
            exit_stack.push_async_callback(breakers.aclose)  # flushes to Redis: before it closes
            latency = build_latency_tracker(settings, catalog, redis)
            await latency.start()
            exit_stack.push_async_callback(latency.aclose)
            load = DeploymentLoad(tracked=_balanced_deployments(catalog))
            factory = _resilient_clients(settings, breakers, telemetry, transport, load)
            registry = build_registry(settings, catalog, client_factory=factory)
            exit_stack.push_async_callback(registry.aclose)
            circuits = DeploymentCircuits(DeploymentPicker(registry, breakers=breakers))
            router = build_router(settings, pricing, latency=latency, circuits=circuits)
            # The ledger commits what is queued while the engine lives, and after the pipeline
            # has drained (closed in reverse order). It does not wait for the database: its first
            # round of maintenance reconciles the reservations a crashed process left, and
            # limited requests wait for that round.
            instance = claim_instance(settings.oneflow_instance_id)
            exit_stack.callback(instance.release)  # after the ledger has closed
            ledger = Ledger(
                engine,
                pricing,
                LedgerConfig.from_settings(settings),
                instance=instance.name,
                on_budget_alert=partial(_report_budget_alert, telemetry),
                bus=identity.bus,  # funding and budget changes travel like key revocations
                health=_database_health(engine, telemetry),
                spool=_ledger_spool(settings, instance.name, telemetry),
            )
            await ledger.start()
            exit_stack.push_async_callback(ledger.close)
            bodies = BodyLogHook(engine, redactor)
            exit_stack.push_async_callback(bodies.close)  # after the pipeline has drained
            idempotency = build_idempotency_store(settings, redis, redis_up)
            # Each encoding is built on its first count (25-45 MiB each, about a second, in a
            # thread: EncodingHook): a worker holds only those of the models it is asked for.
            tokens = TokenizerEstimator(counter)
            cache_store = _cache_store(settings, redis)
            semantic = SemanticCache(await _semantic_index(settings, engine), cache_store)
            pipeline = Pipeline(
                registry,
                pricing,
                estimator=tokens,
                selector=partial(select_by_router, router),
                telemetry=telemetry,
                breakers=breakers,
                load=load,
                hooks=[
                    FeedbackHook(latency, telemetry.metrics),  # first: sees refused calls too
                    RefusalHook(ledger),  # before the hooks that refuse: records their refusals
                    EncodingHook(tokens),  # builds encodings in a thread: before any count
                    # Looks the answer up: the limits and the ledger then know a hit ...
                    ResponseCache(
                        cache_store,
                        settings,
                        telemetry.metrics,
                        claims=idempotency,  # coalesces identical misses
                        semantic=semantic,
                    ),
                    RateLimitHook(
                        limiter, tokens, count_cache_hits=settings.cache_counts_rate_limits
                    ),
                    LedgerHook(ledger, pricing, tokens),
                    bodies,
                    CacheServer(),  # ... which is answered once every other hook admitted it
                ],
            )
            semantic.embedder = pipeline_embedder(pipeline.embed)  # the caller's own call
            exit_stack.push_async_callback(pipeline.drain)
        except BaseException:
            await exit_stack.aclose()
            raise
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
        return cls(
            settings=settings,
            engine=engine,
            sessionmaker=sessionmaker,
            redis=redis,
            redactor=redactor,
            telemetry=telemetry,
            identity=identity,
            limiter=limiter,
            catalog=catalog,
            pricing=pricing,
            estimates=Estimator(pricing, counter),
            registry=registry,
            pipeline=pipeline,
            breakers=breakers,
            latency=latency,
            router=router,
            idempotency=idempotency,
            ledger=ledger,
            schema=await _watch_schema(engine),
            bodies=bodies,
            fake_providers=fakes,
            reachability=reachability,
            exit_stack=exit_stack,
        )

    async def close(self) -> None:
        await self.exit_stack.aclose()


async def _start_fakes(
    settings: Settings, exit_stack: AsyncExitStack
) -> tuple[FakeProviders, Settings]:
    """Serve the fake providers in this event loop on a free loopback port, and the settings
    that point every provider at them. Development only: production settings refuse it."""
    from oneflow_fakes.demo import FakeProviders

    fakes = FakeProviders(host="127.0.0.1", port=0)
    await fakes.start_async()
    exit_stack.push_async_callback(fakes.stop_async)
    update: dict[str, object] = {
        name: SecretStr(value) if name.endswith("_api_key") else value
        for name, value in fakes.settings_overrides().items()
    }
    log.warning(
        "FAKE PROVIDERS IN USE: every answer is made up by OneFlow's built-in fake OpenAI, "
        "Anthropic, Stability AI and ElevenLabs servers, nothing reaches a real provider. "
        "Set provider API keys (or FAKE_PROVIDERS=off) to serve real models.",
        fake_providers_url=fakes.url,
    )
    return fakes, settings.model_copy(update=update)


async def _watch_schema(engine: AsyncEngine) -> SchemaWatch:
    """The schema watch for /ready, read once now: a database that is not at the code's head
    is a warning here (`oneflow serve` refuses it before the app starts, unless told to wait
    for a migration job)."""
    watch = SchemaWatch(engine)
    try:
        status = await watch.status()
    except Exception as exc:  # the database is away: /ready reports it
        log.warning("schema_unknown", error=str(exc).splitlines()[0] if str(exc) else repr(exc))
        return watch
    if not status.current:
        log.warning(
            "schema_not_current",
            reason=status.reason,
            revision=status.revision,
            head=status.head,
        )
    return watch


def _cache_store(settings: Settings, redis: Redis | None) -> ResponseCacheStore:
    """The response cache's store: Redis (shared by the replicas) with REDIS_URL, else this
    process's own, bounded by CACHE_MEMORY_BYTES."""
    if redis is not None:
        return RedisResponseCache(
            redis,
            prefix=f"{settings.redis_key_prefix}cache:",
            max_entry_bytes=settings.cache_max_entry_bytes,
        )
    return MemoryResponseCache(
        max_bytes=settings.cache_memory_bytes, max_entry_bytes=settings.cache_max_entry_bytes
    )


async def _semantic_index(settings: Settings, engine: AsyncEngine) -> SemanticIndex:
    """The semantic cache's index: PostgreSQL's with pgvector (migration 0011 made its
    `embedding` column), else this process's, bounded by CACHE_SEMANTIC_MAX_ENTRIES."""
    try:
        if await has_pgvector(engine):
            return PgVectorSemanticIndex(engine)
    except Exception as exc:  # the database is away at start-up: the process's own index
        log.warning("semantic_index_unknown", error=str(exc).splitlines()[0] or repr(exc))
    return MemorySemanticIndex(max_entries=settings.cache_semantic_max_entries)


def _redis_health(settings: Settings, telemetry: Telemetry) -> Health | None:
    """Redis's health flag (with REDIS_URL): tripped by failures, probed twice a second."""
    if not settings.redis_url:
        return None
    limits = "admitted" if settings.rate_limit_fail_open else "refused (503)"
    health = redis_health(
        settings.redis_url,
        degraded=f"rate-limited requests are {limits} (RATE_LIMIT_FAIL_OPEN); circuit "
        "breakers and idempotency keys are this process's own",
    )
    metrics = telemetry.metrics
    health.on_change.append(lambda down: metrics.set_dependency_unreachable("redis", down))
    return health


def _database_health(engine: AsyncEngine, telemetry: Telemetry) -> Health:
    """The database's health flag: tripped by the ledger's writes, probed twice a second."""
    health = Health(
        "database",
        lambda: ping(engine),
        degraded="requests that need a hold get 503 (LEDGER_DEGRADED_POSTPAID: no hold); "
        "settlements go to the ledger spool",
    )
    metrics = telemetry.metrics
    health.on_change.append(lambda down: metrics.set_dependency_unreachable("database", down))
    return health


def _ledger_spool(settings: Settings, instance: str, telemetry: Telemetry) -> SettlementSpool:
    """This process's spool, named after its instance (a restart replays what it left)."""
    name = "".join(c if c.isalnum() or c in "-_." else "-" for c in instance)
    spool = SettlementSpool(settings.oneflow_data_dir / f"ledger-spool-{name}.jsonl")
    spool.on_backlog = telemetry.metrics.set_ledger_spool_backlog
    telemetry.metrics.set_ledger_spool_backlog(spool.pending)
    return spool


def _report_budget_alert(telemetry: Telemetry, alert: BudgetAlert) -> None:
    budget = alert.budget
    telemetry.metrics.record_budget_alert(budget.scope, budget.metric.value, budget.mode.value)


def _report_breakers(breakers: CircuitBreakers, telemetry: Telemetry) -> None:
    metrics = telemetry.metrics

    def on_change(key: str, _previous: CircuitState, current: CircuitState) -> None:
        if "/" not in key:  # provider circuits only: the gauge's labels stay bounded
            metrics.set_breaker_state(key, current.value)

    breakers.on_change = on_change


def _resilient_clients(
    settings: Settings,
    breakers: CircuitBreakers,
    telemetry: Telemetry,
    transport: ClientFactory | None = None,
    load: DeploymentLoad | None = None,
) -> ClientFactory:
    """Each provider's pooled client wrapped in its breakers, retries and idempotency keys,
    and in the count of its calls in flight and rate-limit headroom (`load`); with tracing on,
    its requests carry the upstream attempt's `traceparent`."""
    metrics = telemetry.metrics
    tracing = telemetry.tracing
    trace_context = tracing.inject if tracing.enabled else None

    def on_retry(event: RetryEvent) -> None:
        metrics.record_retry(event.provider, event.error.kind)

    def factory(provider: ProviderSettings, headers: Mapping[str, str]) -> UpstreamClient:
        caller = build_caller(settings, provider.name, breakers, on_retry=on_retry)
        if transport is None:
            client = default_client(provider, headers, trace_context=trace_context)
        else:
            client = transport(provider, headers)
        resilient = ResilientUpstream(client, caller)
        tracked = load.tracked if load is not None else frozenset()
        if load is None or (
            tracked is not None and not any(key.startswith(f"{provider.name}/") for key in tracked)
        ):
            return resilient  # serves no model balanced over deployments
        return LoadTrackingUpstream(resilient, load)

    return factory


def _balanced_deployments(catalog: Catalog) -> frozenset[str]:
    """The `provider/model` keys of the deployments of models served by more than one (whose
    load and rate-limit headroom are followed)."""
    keys: set[str] = set()
    for entry in catalog:
        deployments = catalog.deployments(entry)
        if len(deployments) > 1:
            keys.update(f"{d.provider}/{d.upstream_model(entry.id)}" for d in deployments)
    return frozenset(keys)
