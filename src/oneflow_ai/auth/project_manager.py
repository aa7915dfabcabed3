"""Projects (teams): created and configured by system admins, read by their own members.

A project's aggregate rate limits change field by field: `update(limits={"requests_per_minute":
100})` sets that limit and keeps the others, `{"requests_per_hour": None}` removes one, and
`limits=None` removes them all (a `LimitPolicy` replaces them all).
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Mapping
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from oneflow_ai.auth.clock import Clock, system_clock
from oneflow_ai.auth.invalidation import InvalidationBus
from oneflow_ai.auth.permissions import (
    Permission,
    ensure_permission,
    has_permission,
)
from oneflow_ai.auth.principal import Principal
from oneflow_ai.domain.limits import LimitPolicy
from oneflow_ai.errors import BadRequestError, ConflictError, NotFoundError
from oneflow_ai.settings import CachePolicy
from oneflow_ai.storage.projects import ProjectRepository
from oneflow_ai.storage.tables import Project

__all__ = ["UNCHANGED", "ProjectManager", "Unchanged"]

_PROJECT_ID = re.compile(r"^[a-z0-9][a-z0-9_\-]{2,63}$")


class Unchanged:
    __slots__ = ()


UNCHANGED = Unchanged()


class ProjectManager:
    def __init__(
        self,
        sessionmaker: async_sessionmaker[AsyncSession],
        bus: InvalidationBus,
        *,
        clock: Clock = system_clock,
    ) -> None:
        self._sessions = sessionmaker
        self._bus = bus
        self._clock = clock

    async def create(
        self,
        actor: Principal,
        *,
        name: str,
        project_id: str | None = None,
        limits: LimitPolicy | None = None,
        cache: CachePolicy | None = None,
    ) -> Project:
        ensure_permission(actor, Permission.PROJECTS_ADMIN)
        name = name.strip()
        if not name or len(name) > 200:
            raise BadRequestError("A project needs a name of 1 to 200 characters", param="name")
        identifier = project_id or f"proj_{secrets.token_hex(6)}"
        if not _PROJECT_ID.match(identifier):
            raise BadRequestError(
                "A project id has 3 to 64 lower-case letters, digits, '_' or '-'", param="id"
            )
        async with self._sessions.begin() as session:
            projects = ProjectRepository(session)
            if await projects.get(identifier) is not None:
                raise ConflictError(
                    f"Project '{identifier}' exists", param="id", code="project_exists"
                )
            if await projects.by_name(name) is not None:
                raise ConflictError(
                    f"A project named '{name}' exists", param="name", code="project_exists"
                )
            project = Project(
                id=identifier,
                name=name,
                created_at=self._clock(),
                limits=limits.to_mapping() if limits is not None else None,
                cache=_stored(cache),
            )
            await projects.add(project)
            return project

    async def list_projects(self, actor: Principal) -> list[Project]:
        ensure_permission(actor, Permission.PROJECT_READ)
        only = None if has_permission(actor, Permission.PROJECTS_ADMIN) else actor.project_id
        async with self._sessions() as session:
            return await ProjectRepository(session).find(only=only)

    async def get(self, actor: Principal, project_id: str) -> Project:
        ensure_permission(actor, Permission.PROJECT_READ)
        async with self._sessions() as session:
            project = await ProjectRepository(session).get(project_id)
        if project is None or (project.id != actor.project_id and not actor.is_system_admin):
            raise NotFoundError(f"No project '{project_id}'", code="project_not_found")
        return project

    async def update(
        self,
        actor: Principal,
        project_id: str,
        *,
        name: str | None = None,
        limits: LimitPolicy | Mapping[str, int | None] | Unchanged | None = UNCHANGED,
        cache: CachePolicy | Unchanged | None = UNCHANGED,
    ) -> Project:
        """Rename the project and/or change its limits (see the module docstring) and/or
        replace its response-cache policy (None removes it)."""
        ensure_permission(actor, Permission.PROJECTS_ADMIN)
        async with self._sessions.begin() as session:
            projects = ProjectRepository(session)
            # Locked (PostgreSQL): two updates of different limits both take effect.
            project = await projects.get(project_id, for_update=True)
            if project is None:
                raise NotFoundError(f"No project '{project_id}'", code="project_not_found")
            if name is not None:
                name = name.strip()
                if not name or len(name) > 200:
                    raise BadRequestError(
                        "A project needs a name of 1 to 200 characters", param="name"
                    )
                other = await projects.by_name(name)
                if other is not None and other.id != project_id:
                    raise ConflictError(
                        f"A project named '{name}' exists", param="name", code="project_exists"
                    )
                project.name = name
            if not isinstance(limits, Unchanged):
                if limits is not None and not isinstance(limits, LimitPolicy):
                    current = LimitPolicy.from_mapping(project.limits)
                    try:
                        limits = LimitPolicy.changed(current, limits)
                    except ValueError as exc:
                        raise BadRequestError(str(exc), param="limits") from None
                project.limits = limits.to_mapping() if limits is not None else None
            if not isinstance(cache, Unchanged):
                project.cache = _stored(cache)
        await self._bus.publish(f"project:{project_id}")
        return project


def _stored(cache: CachePolicy | None) -> dict[str, Any] | None:
    """A cache policy as the project row keeps it (JSON: the fraction as a string)."""
    return cache.model_dump(mode="json", exclude_defaults=True) if cache is not None else None
