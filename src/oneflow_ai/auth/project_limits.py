"""Project rate limits and cache policies for signed-in users, cached like keys (TTL +
invalidation)."""

from __future__ import annotations

import time
from collections.abc import Callable

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from oneflow_ai.auth.principal import cache_policy
from oneflow_ai.domain.limits import LimitPolicy
from oneflow_ai.settings import CachePolicy
from oneflow_ai.storage.projects import ProjectRepository

__all__ = ["ProjectLimitCache"]


class ProjectLimitCache:
    def __init__(
        self,
        sessionmaker: async_sessionmaker[AsyncSession],
        *,
        ttl: float,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._sessions = sessionmaker
        self._ttl = ttl
        self._now = monotonic
        self._entries: dict[str, tuple[float, LimitPolicy | None, CachePolicy | None]] = {}
        self._generation = 0

    async def get(self, project_id: str) -> LimitPolicy | None:
        return (await self.settings(project_id))[0]

    async def settings(self, project_id: str) -> tuple[LimitPolicy | None, CachePolicy | None]:
        """The project's aggregate rate limits and its response-cache policy."""
        entry = self._entries.get(project_id)
        if entry is not None and entry[0] > self._now():
            return entry[1], entry[2]
        generation = self._generation
        async with self._sessions() as session:
            project = await ProjectRepository(session).get(project_id)
        policy = LimitPolicy.from_mapping(project.limits) if project is not None else None
        cache = cache_policy(project.cache) if project is not None else None
        if generation == self._generation:
            if len(self._entries) > 10_000:
                self._entries.clear()
            self._entries[project_id] = (self._now() + self._ttl, policy, cache)
        return policy, cache

    def invalidate(self, project_id: str | None = None) -> None:
        self._generation += 1
        if project_id is None:
            self._entries.clear()
        else:
            self._entries.pop(project_id, None)
