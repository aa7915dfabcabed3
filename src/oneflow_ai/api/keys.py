"""`/api/v1/keys`: create (the key is shown once), list, get, edit, rotate, revoke."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request
from pydantic import Field
from starlette.responses import Response

from oneflow_ai.api.bodies import Body, JsonRoute
from oneflow_ai.api.deps import get_services, rate_limit, require
from oneflow_ai.api.responses import json_response
from oneflow_ai.api.views import key_view, list_view
from oneflow_ai.auth.key_manager import NewKey
from oneflow_ai.auth.permissions import Permission
from oneflow_ai.auth.principal import Principal, Role
from oneflow_ai.auth.project_manager import UNCHANGED, Unchanged
from oneflow_ai.domain.limits import MAX_LIMIT, LimitPolicy
from oneflow_ai.errors import BadRequestError

__all__ = ["LimitsBody", "router"]

router = APIRouter(
    route_class=JsonRoute, prefix="/api/v1/keys", tags=["keys"], dependencies=[Depends(rate_limit)]
)

_NO_STORE = {"Cache-Control": "no-store"}


class LimitsBody(Body):
    """Rate limits; in a PATCH, only the fields given change (null removes that limit)."""

    requests_per_minute: int | None = Field(default=None, ge=1, le=MAX_LIMIT)
    requests_per_hour: int | None = Field(default=None, ge=1, le=MAX_LIMIT)
    tokens_per_minute: int | None = Field(default=None, ge=1, le=MAX_LIMIT)

    def policy(self) -> LimitPolicy | None:
        policy = LimitPolicy(
            self.requests_per_minute, self.requests_per_hour, self.tokens_per_minute
        )
        return None if policy.is_empty else policy

    def changes(self) -> dict[str, int | None]:
        """The fields the client gave, with their values (None: remove that limit)."""
        return {name: getattr(self, name) for name in self.model_fields_set}


class CreateKey(Body):
    name: str = Field(min_length=1, max_length=200)
    project_id: str | None = Field(default=None, max_length=64)
    role: Role = Role.MEMBER
    expires_at: datetime | None = None
    expires_in_days: int | None = Field(default=None, ge=1, le=3650)
    allowed_models: list[str] | None = Field(default=None, max_length=500)
    limits: LimitsBody | None = None
    unlimited: bool = False


class UpdateKey(Body):
    """Only the fields given change; null means: expires_at never, allowed_models every model,
    limits none (a null inside limits removes that one)."""

    name: str | None = Field(default=None, min_length=1, max_length=200)
    expires_at: datetime | None = None
    expires_in_days: int | None = Field(default=None, ge=1, le=3650)
    allowed_models: list[str] | None = Field(default=None, max_length=500)
    limits: LimitsBody | None = None


class RotateKey(Body):
    grace_seconds: int | None = Field(default=None, ge=0, le=30 * 86_400)


def _created(request: Request, new: NewKey) -> Response:
    now = get_services(request).identity.clock()
    return json_response({**key_view(new.row, now), "key": new.key}, 201, _NO_STORE)


def _expiry(
    now: datetime, expires_at: datetime | None, expires_in_days: int | None
) -> datetime | None:
    if expires_at is not None and expires_in_days is not None:
        raise BadRequestError("Give expires_at or expires_in_days, not both", param="expires_at")
    if expires_at is not None and expires_at.tzinfo is None:
        raise BadRequestError("expires_at needs a timezone (e.g. ...Z)", param="expires_at")
    if expires_in_days is not None:
        return now + timedelta(days=expires_in_days)
    return expires_at


@router.post(
    "", status_code=201, summary="Create an API key; the response is the only time it is shown"
)
async def create_key(
    request: Request,
    body: CreateKey,
    principal: Annotated[Principal, Depends(require(Permission.KEYS_WRITE))],
) -> Response:
    identity = get_services(request).identity
    expires_at = _expiry(identity.clock(), body.expires_at, body.expires_in_days)
    new = await identity.keys.create(
        principal,
        project_id=body.project_id or principal.project_id,
        name=body.name,
        role=body.role,
        expires_at=expires_at,
        allowed_models=body.allowed_models,
        limits=body.limits.policy() if body.limits is not None else None,
        unlimited=body.unlimited,
    )
    return _created(request, new)


@router.get("", summary="List the API keys of a project (yours unless a system admin asks)")
async def list_keys(
    request: Request,
    principal: Annotated[Principal, Depends(require(Permission.KEYS_READ))],
    project_id: Annotated[str | None, Query(max_length=64)] = None,
) -> Response:
    identity = get_services(request).identity
    keys = await identity.keys.list_keys(principal, project_id=project_id)
    now = identity.clock()
    return json_response(list_view([key_view(k, now) for k in keys]))


@router.get("/{key_id}", summary="One API key (never its secret)")
async def get_key(
    request: Request,
    key_id: str,
    principal: Annotated[Principal, Depends(require(Permission.KEYS_READ))],
) -> Response:
    identity = get_services(request).identity
    key = await identity.keys.get(principal, key_id)
    return json_response(key_view(key, identity.clock()))


@router.patch(
    "/{key_id}",
    summary="Change a key's name, expiry, allowed models or limits, on every replica at once",
)
async def update_key(
    request: Request,
    key_id: str,
    body: UpdateKey,
    principal: Annotated[Principal, Depends(require(Permission.KEYS_WRITE))],
) -> Response:
    identity = get_services(request).identity
    given = body.model_fields_set
    expires_at: datetime | Unchanged | None = UNCHANGED
    if {"expires_at", "expires_in_days"} <= given:
        raise BadRequestError("Give expires_at or expires_in_days, not both", param="expires_at")
    if "expires_at" in given or body.expires_in_days is not None:
        expires_at = _expiry(identity.clock(), body.expires_at, body.expires_in_days)
    limits: dict[str, int | None] | Unchanged | None = UNCHANGED
    if "limits" in given:
        limits = body.limits.changes() if body.limits is not None else None
    key = await identity.keys.update(
        principal,
        key_id,
        name=body.name,
        expires_at=expires_at,
        allowed_models=body.allowed_models if "allowed_models" in given else UNCHANGED,
        limits=limits,
    )
    return json_response(key_view(key, identity.clock()))


@router.post(
    "/{key_id}/rotate",
    status_code=201,
    summary="Issue a successor key; the old one keeps working for the grace period",
)
async def rotate_key(
    request: Request,
    key_id: str,
    principal: Annotated[Principal, Depends(require(Permission.KEYS_WRITE))],
    body: RotateKey | None = None,
) -> Response:
    identity = get_services(request).identity
    grace = None
    if body is not None and body.grace_seconds is not None:
        grace = timedelta(seconds=body.grace_seconds)
    new = await identity.keys.rotate(principal, key_id, grace=grace)
    return _created(request, new)


@router.post("/{key_id}/revoke", summary="Revoke an API key at once, on every replica")
async def revoke_key(
    request: Request,
    key_id: str,
    principal: Annotated[Principal, Depends(require(Permission.KEYS_WRITE))],
) -> Response:
    identity = get_services(request).identity
    key = await identity.keys.revoke(principal, key_id)
    return json_response(key_view(key, identity.clock()))
