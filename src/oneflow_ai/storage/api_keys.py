"""API keys: stored rows (hash only), lookup by prefix, rotation candidates, batched touches."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from sqlalchemy import or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from oneflow_ai.storage.database import lock_for_update
from oneflow_ai.storage.tables import ApiKey, Project, table_of

__all__ = ["ApiKeyRepository"]


class ApiKeyRepository:
    def __init__(self, session: AsyncSession) -> None:
        self._session = session

    async def add(self, key: ApiKey) -> None:
        self._session.add(key)
        await self._session.flush()

    async def get(self, key_id: str, *, for_update: bool = False) -> ApiKey | None:
        """The key, or None; `for_update` locks its row until the transaction ends."""
        if for_update:
            await lock_for_update(self._session, table_of(ApiKey), ApiKey.id == key_id)
        return await self._session.get(ApiKey, key_id, with_for_update=for_update)

    async def by_prefix(
        self, prefix: str
    ) -> tuple[ApiKey, dict[str, int] | None, dict[str, Any] | None] | None:
        """The key with this prefix, its project's limits and its project's cache policy, in
        one query."""
        result = await self._session.execute(
            select(ApiKey, Project.limits, Project.cache)
            .join(Project, Project.id == ApiKey.project_id)
            .where(ApiKey.prefix == prefix)
        )
        row = result.first()
        return None if row is None else (row[0], row[1], row[2])

    async def find(self, *, project_id: str | None = None, limit: int = 100) -> list[ApiKey]:
        query = select(ApiKey).order_by(ApiKey.created_at.desc(), ApiKey.id).limit(limit)
        if project_id is not None:
            query = query.where(ApiKey.project_id == project_id)
        return list((await self._session.execute(query)).scalars())

    async def mark_rotated(self, key_id: str, *, grace_until: datetime) -> bool:
        """Start the grace period of a live key; False when it was rotated or revoked already."""
        result = await self._session.execute(
            update(ApiKey)
            .where(
                ApiKey.id == key_id,
                ApiKey.grace_until.is_(None),
                ApiKey.revoked_at.is_(None),
            )
            .values(grace_until=grace_until)
        )
        return getattr(result, "rowcount", 0) == 1

    async def due_for_rotation(self, *, created_before: datetime, now: datetime) -> list[ApiKey]:
        """Live keys older than the maximum age that no rotation has replaced yet."""
        result = await self._session.execute(
            select(ApiKey)
            .where(
                ApiKey.created_at <= created_before,
                ApiKey.revoked_at.is_(None),
                ApiKey.grace_until.is_(None),
                or_(ApiKey.expires_at.is_(None), ApiKey.expires_at > now),
            )
            .order_by(ApiKey.created_at, ApiKey.id)
        )
        return list(result.scalars())

    async def touch(self, last_used: Mapping[str, datetime]) -> None:
        """Record when keys were last used (a background batch, never per request)."""
        for key_id, when in last_used.items():
            await self._session.execute(
                update(ApiKey)
                .where(
                    ApiKey.id == key_id,
                    or_(ApiKey.last_used_at.is_(None), ApiKey.last_used_at < when),
                )
                .values(last_used_at=when)
            )
