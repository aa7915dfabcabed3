"""Users and their memberships in projects."""

from __future__ import annotations

from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncSession

from oneflow_ai.storage.tables import Membership, User

__all__ = ["UserRepository"]


class UserRepository:
    def __init__(self, session: AsyncSession) -> None:
        self._session = session

    async def add(self, user: User) -> None:
        self._session.add(user)
        await self._session.flush()

    async def get(self, user_id: str) -> User | None:
        return await self._session.get(User, user_id)

    async def by_email(self, email: str) -> User | None:
        result = await self._session.execute(select(User).where(User.email == email))
        return result.scalar_one_or_none()

    async def find(self, *, project_id: str | None = None) -> list[User]:
        query = select(User).order_by(User.created_at, User.id)
        if project_id is not None:
            query = query.join(Membership, Membership.user_id == User.id).where(
                Membership.project_id == project_id
            )
        return list((await self._session.execute(query)).scalars())

    async def memberships(self, user_id: str) -> list[Membership]:
        result = await self._session.execute(
            select(Membership)
            .where(Membership.user_id == user_id)
            .order_by(Membership.created_at, Membership.project_id)
        )
        return list(result.scalars())

    async def memberships_of(self, user_ids: list[str]) -> list[Membership]:
        if not user_ids:
            return []
        result = await self._session.execute(
            select(Membership)
            .where(Membership.user_id.in_(user_ids))
            .order_by(Membership.created_at, Membership.project_id)
        )
        return list(result.scalars())

    async def membership(self, user_id: str, project_id: str) -> Membership | None:
        return await self._session.get(Membership, (user_id, project_id))

    async def set_membership(self, user_id: str, project_id: str, role: str) -> Membership:
        existing = await self.membership(user_id, project_id)
        if existing is not None:
            existing.role = role
            await self._session.flush()
            return existing
        membership = Membership(user_id=user_id, project_id=project_id, role=role)
        self._session.add(membership)
        await self._session.flush()
        return membership

    async def remove_membership(self, user_id: str, project_id: str) -> bool:
        result = await self._session.execute(
            delete(Membership).where(
                Membership.user_id == user_id, Membership.project_id == project_id
            )
        )
        return bool(getattr(result, "rowcount", 0))
