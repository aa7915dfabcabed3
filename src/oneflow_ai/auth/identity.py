"""`Identity`: everything that decides who is calling, built once per process from settings.

identity = Identity.build(settings, sessionmaker, redis)   # in the app's lifespan
await identity.start()                                      # invalidation listener, batches
principal = await identity.authenticate(credential)         # every request
identity.keys / .users / .projects / .sessions              # management (API and CLI)
await identity.close()
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import TYPE_CHECKING

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from oneflow_ai.auth.api_keys import KeyHasher
from oneflow_ai.auth.clock import Clock, system_clock
from oneflow_ai.auth.invalidation import EVERYTHING, InvalidationBus, RedisInvalidationBus
from oneflow_ai.auth.key_cache import KeyCache
from oneflow_ai.auth.key_manager import KeyManager
from oneflow_ai.auth.last_used import LastUsedRecorder
from oneflow_ai.auth.passwords import PasswordHashing
from oneflow_ai.auth.principal import Principal
from oneflow_ai.auth.project_limits import ProjectLimitCache
from oneflow_ai.auth.project_manager import ProjectManager
from oneflow_ai.auth.resolver import CredentialResolver
from oneflow_ai.auth.sessions import SessionManager
from oneflow_ai.auth.tokens import TokenCodec
from oneflow_ai.auth.user_manager import UserManager
from oneflow_ai.catalog import Catalog, load_catalog
from oneflow_ai.settings import Settings

if TYPE_CHECKING:  # redis-py is imported only when REDIS_URL is set
    from redis.asyncio import Redis

__all__ = ["Identity", "invalidation_channel"]


def invalidation_channel(settings: Settings) -> str:
    return f"{settings.redis_key_prefix}auth:invalidate"


class Identity:
    def __init__(
        self,
        settings: Settings,
        sessionmaker: async_sessionmaker[AsyncSession],
        bus: InvalidationBus,
        *,
        clock: Clock = system_clock,
        monotonic: Callable[[], float] = time.monotonic,
        passwords: PasswordHashing | None = None,
        last_used_interval: float = 60.0,
        catalog: Catalog | None = None,
    ) -> None:
        self.settings = settings
        self.bus = bus
        self.clock = clock
        master = settings.oneflow_master_key.get_secret_value()
        pepper = settings.api_key_pepper.get_secret_value() if settings.api_key_pepper else None
        self.hasher = KeyHasher.from_secrets(pepper, master)
        self.codec = TokenCodec(
            secret=settings.jwt_secret.get_secret_value(),
            previous_secrets=[s.get_secret_value() for s in settings.jwt_previous_secrets],
            issuer=settings.jwt_issuer,
            audience=settings.jwt_audience,
            access_ttl=settings.jwt_access_ttl_seconds,
            refresh_ttl=settings.jwt_refresh_ttl_seconds,
            clock=clock,
        )
        self.passwords = passwords or PasswordHashing()
        self.cache = KeyCache(
            ttl=settings.api_key_cache_ttl_seconds,
            max_size=settings.api_key_cache_size,
            monotonic=monotonic,
        )
        self.project_limits = ProjectLimitCache(
            sessionmaker, ttl=settings.api_key_cache_ttl_seconds, monotonic=monotonic
        )
        self.keys = KeyManager(
            sessionmaker,
            self.hasher,
            bus,
            catalog=catalog if catalog is not None else load_catalog(settings.catalog_path),
            default_grace=timedelta(hours=settings.api_key_rotation_grace_hours),
            clock=clock,
        )
        self.users = UserManager(sessionmaker, self.passwords, clock=clock)
        self.projects = ProjectManager(sessionmaker, bus, clock=clock)
        self.sessions = SessionManager(sessionmaker, self.passwords, self.codec, clock=clock)
        self.last_used = LastUsedRecorder(sessionmaker, interval=last_used_interval)
        self.resolver = CredentialResolver(
            master_key=master,
            keys=self.keys,
            cache=self.cache,
            hasher=self.hasher,
            codec=self.codec,
            project_limits=self.project_limits,
            last_used=self.last_used,
            clock=clock,
        )
        bus.subscribe(self._on_invalidation)

    @classmethod
    def build(
        cls,
        settings: Settings,
        sessionmaker: async_sessionmaker[AsyncSession],
        redis: Redis | None,
        *,
        clock: Clock = system_clock,
        catalog: Catalog | None = None,
    ) -> Identity:
        """With Redis, invalidations reach every replica; without, this process only. Model
        allow-lists are resolved against `catalog` (default: the settings' catalog)."""
        bus: InvalidationBus = (
            RedisInvalidationBus(redis, invalidation_channel(settings))
            if redis is not None
            else InvalidationBus()
        )
        return cls(settings, sessionmaker, bus, clock=clock, catalog=catalog)

    def authenticate(self, credential: str) -> Awaitable[Principal]:
        """The resolver's coroutine itself (every request awaits it: no second one around it)."""
        return self.resolver.authenticate(credential)

    async def start(self) -> None:
        await self.bus.start()
        await self.last_used.start()

    async def close(self) -> None:
        await self.last_used.close()
        await self.bus.close()

    def _on_invalidation(self, message: str) -> None:
        kind, _, value = message.partition(":")
        if message == EVERYTHING:
            self.cache.clear()
            self.project_limits.invalidate()
        elif kind == "key":
            self.cache.invalidate(value)
        elif kind == "project":
            self.cache.invalidate_project(value)
            self.project_limits.invalidate(value)
