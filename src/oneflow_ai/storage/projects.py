"""Projects: create, find, list, and their aggregate rate limits."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from oneflow_ai.storage.database import lock_for_update
from oneflow_ai.storage.tables import Project, table_of

__all__ = ["ProjectRepository"]


class ProjectRepository:
    def __init__(self, session: AsyncSession) -> None:
        self._session = session

    async def add(self, project: Project) -> None:
        self._session.add(project)
        await self._session.flush()

    async def get(self, project_id: str, *, for_update: bool = False) -> Project | None:
        """The project, or None; `for_update` locks its row until the transaction ends."""
        if for_update:
            await lock_for_update(self._session, table_of(Project), Project.id == project_id)
        return await self._session.get(Project, project_id, with_for_update=for_update)

    async def by_name(self, name: str) -> Project | None:
        result = await self._session.execute(select(Project).where(Project.name == name))
        return result.scalar_one_or_none()

    async def find(self, *, only: str | None = None) -> list[Project]:
        query = select(Project).order_by(Project.created_at, Project.id)
        if only is not None:
            query = query.where(Project.id == only)
        return list((await self._session.execute(query)).scalars())
