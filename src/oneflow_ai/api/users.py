"""`/api/v1/users`: create (into a project), list, get, update (system admins)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request
from pydantic import Field
from starlette.responses import Response

from oneflow_ai.api.bodies import Body, JsonRoute
from oneflow_ai.api.deps import authenticate, get_services, rate_limit, require
from oneflow_ai.api.responses import json_response
from oneflow_ai.api.views import list_view, user_view
from oneflow_ai.auth.permissions import Permission
from oneflow_ai.auth.principal import Principal, Role

__all__ = ["router"]

router = APIRouter(
    route_class=JsonRoute,
    prefix="/api/v1/users",
    tags=["users"],
    dependencies=[Depends(rate_limit)],
)


class CreateUser(Body):
    email: str = Field(max_length=320)
    password: str = Field(max_length=1024)
    project_id: str | None = Field(default=None, max_length=64)
    role: Role = Role.MEMBER


class UpdateUser(Body):
    active: bool | None = None
    password: str | None = Field(default=None, max_length=1024)


@router.post("", status_code=201, summary="Create a user as a member of a project")
async def create_user(
    request: Request,
    body: CreateUser,
    principal: Annotated[Principal, Depends(require(Permission.MEMBERS_WRITE))],
) -> Response:
    view = await get_services(request).identity.users.create(
        principal,
        email=body.email,
        password=body.password,
        project_id=body.project_id or principal.project_id,
        role=body.role,
    )
    return json_response(user_view(view), 201)


@router.get("", summary="Users: every user for system admins, else your project's members")
async def list_users(
    request: Request,
    principal: Annotated[Principal, Depends(require(Permission.MEMBERS_READ))],
    project_id: Annotated[str | None, Query(max_length=64)] = None,
) -> Response:
    views = await get_services(request).identity.users.list_users(principal, project_id=project_id)
    return json_response(list_view([user_view(v) for v in views]))


@router.get(
    "/{user_id}",
    summary="One user: yourself, a member of your project (admins), anyone (system admins)",
)
async def get_user(
    request: Request,
    user_id: str,
    principal: Annotated[Principal, Depends(authenticate)],
) -> Response:
    view = await get_services(request).identity.users.get(principal, user_id)
    return json_response(user_view(view))


@router.patch("/{user_id}", summary="Activate, deactivate or set the password of a user")
async def update_user(
    request: Request,
    user_id: str,
    body: UpdateUser,
    principal: Annotated[Principal, Depends(require(Permission.USERS_ADMIN))],
) -> Response:
    view = await get_services(request).identity.users.update(
        principal, user_id, active=body.active, password=body.password
    )
    return json_response(user_view(view))
