"""Refresh tokens: one row per issued token, grouped in families that rotate on every use."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from oneflow_ai.storage.tables import RefreshToken

__all__ = ["RefreshTokenRepository"]


class RefreshTokenRepository:
    def __init__(self, session: AsyncSession) -> None:
        self._session = session

    async def add(self, token: RefreshToken) -> None:
        self._session.add(token)
        await self._session.flush()

    async def get(self, token_id: str) -> RefreshToken | None:
        return await self._session.get(RefreshToken, token_id)

    async def claim(self, token_id: str, now: datetime) -> bool:
        """Mark an unused, unrevoked token used; False when it was used or revoked already.

        One conditional UPDATE, so two concurrent refreshes with the same token cannot both win.
        """
        result = await self._session.execute(
            update(RefreshToken)
            .where(
                RefreshToken.id == token_id,
                RefreshToken.used_at.is_(None),
                RefreshToken.revoked_at.is_(None),
            )
            .values(used_at=now)
        )
        return getattr(result, "rowcount", 0) == 1

    async def set_replacement(self, token_id: str, replaced_by: str) -> None:
        await self._session.execute(
            update(RefreshToken).where(RefreshToken.id == token_id).values(replaced_by=replaced_by)
        )

    async def revoke_family(self, family_id: str, now: datetime) -> int:
        result = await self._session.execute(
            update(RefreshToken)
            .where(RefreshToken.family_id == family_id, RefreshToken.revoked_at.is_(None))
            .values(revoked_at=now)
        )
        return int(getattr(result, "rowcount", 0))

    async def family(self, family_id: str) -> list[RefreshToken]:
        result = await self._session.execute(
            select(RefreshToken)
            .where(RefreshToken.family_id == family_id)
            .order_by(RefreshToken.issued_at, RefreshToken.id)
        )
        return list(result.scalars())
