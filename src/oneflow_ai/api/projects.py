"""`/api/v1/projects`: create and configure (system admins), read, manage members."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Request
from pydantic import Field
from starlette.responses import Response

from oneflow_ai.api.bodies import Body, JsonRoute
from oneflow_ai.api.deps import get_services, rate_limit, require
from oneflow_ai.api.keys import LimitsBody
from oneflow_ai.api.responses import json_response
from oneflow_ai.api.views import list_view, membership_view, project_view
from oneflow_ai.auth.permissions import Permission
from oneflow_ai.auth.principal import Principal, Role
from oneflow_ai.auth.project_manager import UNCHANGED, Unchanged
from oneflow_ai.settings import CachePolicy

__all__ = ["router"]

router = APIRouter(
    route_class=JsonRoute,
    prefix="/api/v1/projects",
    tags=["projects"],
    dependencies=[Depends(rate_limit)],
)


class CreateProject(Body):
    name: str = Field(min_length=1, max_length=200)
    id: str | None = Field(default=None, max_length=64)
    limits: LimitsBody | None = None
    # The response cache's policy (docs/cache.md); absent or null: off.
    cache: CachePolicy | None = None


class UpdateProject(Body):
    name: str | None = Field(default=None, min_length=1, max_length=200)
    # Only the limits given change (a null one is removed); null removes them all.
    limits: LimitsBody | None = None
    # A new response-cache policy replaces the old one; null turns the cache off.
    cache: CachePolicy | None = None


class SetMembership(Body):
    role: Role


@router.post("", status_code=201, summary="Create a project (system admins)")
async def create_project(
    request: Request,
    body: CreateProject,
    principal: Annotated[Principal, Depends(require(Permission.PROJECTS_ADMIN))],
) -> Response:
    project = await get_services(request).identity.projects.create(
        principal,
        name=body.name,
        project_id=body.id,
        limits=body.limits.policy() if body.limits is not None else None,
        cache=body.cache,
    )
    return json_response(project_view(project), 201)


@router.get("", summary="Projects: all of them for system admins, else your own")
async def list_projects(
    request: Request,
    principal: Annotated[Principal, Depends(require(Permission.PROJECT_READ))],
) -> Response:
    projects = await get_services(request).identity.projects.list_projects(principal)
    return json_response(list_view([project_view(p) for p in projects]))


@router.get("/{project_id}", summary="One project (yours, or any for system admins)")
async def get_project(
    request: Request,
    project_id: str,
    principal: Annotated[Principal, Depends(require(Permission.PROJECT_READ))],
) -> Response:
    project = await get_services(request).identity.projects.get(principal, project_id)
    return json_response(project_view(project))


@router.patch(
    "/{project_id}",
    summary="Rename a project, change some of its aggregate rate limits or its response-cache "
    "policy (system admins)",
)
async def update_project(
    request: Request,
    project_id: str,
    body: UpdateProject,
    principal: Annotated[Principal, Depends(require(Permission.PROJECTS_ADMIN))],
) -> Response:
    limits: dict[str, int | None] | Unchanged | None = UNCHANGED
    if "limits" in body.model_fields_set:
        limits = body.limits.changes() if body.limits is not None else None
    cache: CachePolicy | Unchanged | None = UNCHANGED
    if "cache" in body.model_fields_set:
        cache = body.cache
    project = await get_services(request).identity.projects.update(
        principal, project_id, name=body.name, limits=limits, cache=cache
    )
    return json_response(project_view(project))


@router.put(
    "/{project_id}/members/{user_id}", summary="Add a user to a project or change their role"
)
async def set_member(
    request: Request,
    project_id: str,
    user_id: str,
    body: SetMembership,
    principal: Annotated[Principal, Depends(require(Permission.MEMBERS_WRITE))],
) -> Response:
    membership = await get_services(request).identity.users.set_membership(
        principal, project_id=project_id, user_id=user_id, role=body.role
    )
    return json_response(membership_view(membership))


@router.delete(
    "/{project_id}/members/{user_id}", status_code=204, summary="Remove a user from a project"
)
async def remove_member(
    request: Request,
    project_id: str,
    user_id: str,
    principal: Annotated[Principal, Depends(require(Permission.MEMBERS_WRITE))],
) -> Response:
    await get_services(request).identity.users.remove_membership(
        principal, project_id=project_id, user_id=user_id
    )
    return Response(status_code=204)
