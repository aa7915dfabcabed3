"""How `Services.start` (`gateway/services.py`) puts one gateway process together: the
stores' health flags, the ledger, each provider's resilient client, the caches, the pipeline
with its hooks in their declared order, and the fake providers of development's demo mode.
"""

from __future__ import annotations

from collections.abc import Mapping
from contextlib import AsyncExitStack
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING

import structlog
from pydantic import SecretStr
from sqlalchemy.ext.asyncio import AsyncEngine

from oneflow_ai.auth.identity import Identity
from oneflow_ai.billing.budgets import BudgetAlert
from oneflow_ai.billing.ledger import Ledger, LedgerConfig
from oneflow_ai.billing.pricing import PricingEngine
from oneflow_ai.catalog import Catalog
from oneflow_ai.gateway.body_log import BodyLogHook
from oneflow_ai.gateway.cache_hook import CacheServer, ResponseCache
from oneflow_ai.gateway.encoding_hook import EncodingHook
from oneflow_ai.gateway.estimate import TokenizerEstimator
from oneflow_ai.gateway.feedback_hook import FeedbackHook
from oneflow_ai.gateway.ledger_hook import LedgerHook, RefusalHook
from oneflow_ai.gateway.limits_hook import RateLimitHook
from oneflow_ai.gateway.pipeline import Pipeline
from oneflow_ai.gateway.planning import select_by_router
from oneflow_ai.gateway.semantic_cache import SemanticCache, pipeline_embedder
from oneflow_ai.limits import RateLimiter
from oneflow_ai.observability.telemetry import Telemetry
from oneflow_ai.providers.registry import (
    ClientFactory,
    ProviderRegistry,
    default_client,
)
from oneflow_ai.providers.upstream import UpstreamClient
from oneflow_ai.resilience.breaker_set import CircuitBreakers
from oneflow_ai.resilience.breaker_state import CircuitState
from oneflow_ai.resilience.caller import RetryEvent
from oneflow_ai.resilience.idempotency import IdempotencyStore
from oneflow_ai.resilience.load import DeploymentLoad, LoadTrackingUpstream
from oneflow_ai.resilience.setup import build_caller
from oneflow_ai.resilience.upstream_client import ResilientUpstream
from oneflow_ai.routing.latency import LatencyTracker
from oneflow_ai.routing.router import IntelligentRouter
from oneflow_ai.settings import ProviderSettings, Settings
from oneflow_ai.storage.database import ping
from oneflow_ai.storage.health import Health
from oneflow_ai.storage.instance import claim_instance
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
    from redis.asyncio import Redis

    from oneflow_fakes.demo import FakeProviders

__all__ = [
    "PipelineParts",
    "balanced_deployments",
    "build_pipeline",
    "cache_store_for",
    "open_ledger",
    "open_redis",
    "report_breakers",
    "resilient_clients",
    "semantic_index_for",
    "start_fakes",
    "watch_schema",
]

log = structlog.get_logger("oneflow")


async def start_fakes(
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


async def watch_schema(engine: AsyncEngine) -> SchemaWatch:
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


def cache_store_for(settings: Settings, redis: Redis | None) -> ResponseCacheStore:
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


async def semantic_index_for(settings: Settings, engine: AsyncEngine) -> SemanticIndex:
    """The semantic cache's index: PostgreSQL's with pgvector (migration 0011 made its
    `embedding` column), else this process's, bounded by CACHE_SEMANTIC_MAX_ENTRIES."""
    try:
        if await has_pgvector(engine):
            return PgVectorSemanticIndex(engine)
    except Exception as exc:  # the database is away at start-up: the process's own index
        log.warning("semantic_index_unknown", error=str(exc).splitlines()[0] or repr(exc))
    return MemorySemanticIndex(max_entries=settings.cache_semantic_max_entries)


def open_redis(settings: Settings, telemetry: Telemetry) -> tuple[Redis | None, Health | None]:
    """With REDIS_URL, the Redis client and Redis's health flag (tripped by failures, probed
    twice a second); without, neither. redis-py is imported here, only when it is used (it
    costs a worker ~8 MiB of memory)."""
    if not settings.redis_url:
        return None, None
    from oneflow_ai.storage.redis import create_redis, redis_health

    limits = "admitted" if settings.rate_limit_fail_open else "refused (503)"
    health = redis_health(
        settings.redis_url,
        degraded=f"rate-limited requests are {limits} (RATE_LIMIT_FAIL_OPEN); circuit "
        "breakers and idempotency keys are this process's own",
    )
    metrics = telemetry.metrics
    health.on_change.append(lambda down: metrics.set_dependency_unreachable("redis", down))
    return create_redis(settings.redis_url, health=health), health


def database_health(engine: AsyncEngine, telemetry: Telemetry) -> Health:
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


def ledger_spool(settings: Settings, instance: str, telemetry: Telemetry) -> SettlementSpool:
    """This process's spool, named after its instance (a restart replays what it left)."""
    name = "".join(c if c.isalnum() or c in "-_." else "-" for c in instance)
    spool = SettlementSpool(settings.oneflow_data_dir / f"ledger-spool-{name}.jsonl")
    spool.on_backlog = telemetry.metrics.set_ledger_spool_backlog
    telemetry.metrics.set_ledger_spool_backlog(spool.pending)
    return spool


def report_budget_alert(telemetry: Telemetry, alert: BudgetAlert) -> None:
    budget = alert.budget
    telemetry.metrics.record_budget_alert(budget.scope, budget.metric.value, budget.mode.value)


def report_breakers(breakers: CircuitBreakers, telemetry: Telemetry) -> None:
    metrics = telemetry.metrics

    def on_change(key: str, _previous: CircuitState, current: CircuitState) -> None:
        if "/" not in key:  # provider circuits only: the gauge's labels stay bounded
            metrics.set_breaker_state(key, current.value)

    breakers.on_change = on_change


def resilient_clients(
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


def balanced_deployments(catalog: Catalog) -> frozenset[str]:
    """The `provider/model` keys of the deployments of models served by more than one (whose
    load and rate-limit headroom are followed)."""
    keys: set[str] = set()
    for entry in catalog:
        deployments = catalog.deployments(entry)
        if len(deployments) > 1:
            keys.update(f"{d.provider}/{d.upstream_model(entry.id)}" for d in deployments)
    return frozenset(keys)


def build_pipeline(
    settings: Settings,
    parts: PipelineParts,
    telemetry: Telemetry,
) -> Pipeline:
    """The request pipeline and its hooks, in the order they run before a call (after it, in
    reverse): see "Pre-hooks, in order" in docs/architecture.md."""
    tokens = parts.tokens
    pipeline = Pipeline(
        parts.registry,
        parts.pricing,
        estimator=tokens,
        selector=partial(select_by_router, parts.router),
        telemetry=telemetry,
        breakers=parts.breakers,
        load=parts.load,
        hooks=[
            FeedbackHook(parts.latency, telemetry.metrics),  # first: sees refused calls too
            RefusalHook(parts.ledger),  # before the hooks that refuse: records their refusals
            EncodingHook(tokens),  # builds encodings in a thread: before any count
            # Looks the answer up: the limits and the ledger then know a hit ...
            ResponseCache(
                parts.cache_store,
                settings,
                telemetry.metrics,
                claims=parts.idempotency,  # coalesces identical misses
                semantic=parts.semantic,
            ),
            RateLimitHook(
                parts.limiter, tokens, count_cache_hits=settings.cache_counts_rate_limits
            ),
            LedgerHook(parts.ledger, parts.pricing, tokens),
            parts.bodies,
            CacheServer(),  # ... which is answered once every other hook admitted it
        ],
    )
    parts.semantic.embedder = pipeline_embedder(pipeline.embed)  # the caller's own call
    return pipeline


async def open_ledger(
    settings: Settings,
    engine: AsyncEngine,
    pricing: PricingEngine,
    identity: Identity,
    telemetry: Telemetry,
    exit_stack: AsyncExitStack,
) -> Ledger:
    """The ledger, started. It commits what is queued while the engine lives, and after the
    pipeline has drained (closed in reverse order). It does not wait for the database: its
    first round of maintenance reconciles the reservations a crashed process left, and
    limited requests wait for that round."""
    instance = claim_instance(settings.oneflow_instance_id)
    exit_stack.callback(instance.release)  # after the ledger has closed
    ledger = Ledger(
        engine,
        pricing,
        LedgerConfig.from_settings(settings),
        instance=instance.name,
        on_budget_alert=partial(report_budget_alert, telemetry),
        bus=identity.bus,  # funding and budget changes travel like key revocations
        health=database_health(engine, telemetry),
        spool=ledger_spool(settings, instance.name, telemetry),
    )
    await ledger.start()
    exit_stack.push_async_callback(ledger.close)
    return ledger


@dataclass
class PipelineParts:
    """What the pipeline and its hooks are built from."""

    registry: ProviderRegistry
    pricing: PricingEngine
    tokens: TokenizerEstimator
    router: IntelligentRouter
    breakers: CircuitBreakers
    load: DeploymentLoad
    latency: LatencyTracker
    limiter: RateLimiter
    ledger: Ledger
    idempotency: IdempotencyStore
    bodies: BodyLogHook
    cache_store: ResponseCacheStore
    semantic: SemanticCache
