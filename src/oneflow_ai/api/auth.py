"""Signing in and out: `POST /api/v1/auth/token`, `/refresh`, `/logout`; and `GET /api/v1/whoami`.

Token responses follow OAuth 2.0's shape (`access_token`, `token_type`, `expires_in`,
`refresh_token`) and are never cached (`Cache-Control: no-store`). Sign-in attempts are limited
per email (`LOGIN_ATTEMPTS_PER_MINUTE`).
"""

from __future__ import annotations

import hashlib
from typing import Annotated

from fastapi import APIRouter, Depends, Request
from pydantic import Field
from starlette.responses import Response

from oneflow_ai.api.bodies import Body, JsonRoute
from oneflow_ai.api.deps import authenticate, get_services, rate_limit
from oneflow_ai.api.responses import json_response
from oneflow_ai.api.views import principal_view
from oneflow_ai.auth.principal import Principal
from oneflow_ai.auth.sessions import TokenPair

__all__ = ["router"]

router = APIRouter(route_class=JsonRoute, tags=["identity"])

_NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}
# The OAuth 2 token type (RFC 6750), not a secret.
_TOKEN_TYPE = "bearer"  # noqa: S105  # nosec B105


class TokenRequest(Body):
    email: str = Field(max_length=320)
    password: str = Field(max_length=1024)
    project_id: str | None = Field(default=None, max_length=64)


class RefreshRequest(Body):
    refresh_token: str = Field(max_length=4096)


def _tokens(pair: TokenPair) -> Response:
    body = {
        "access_token": pair.access_token,
        "token_type": _TOKEN_TYPE,
        "expires_in": pair.expires_in,
        "refresh_token": pair.refresh_token,
        "refresh_expires_in": pair.refresh_expires_in,
        "user_id": pair.user_id,
        "project_id": pair.project_id,
        "role": pair.role,
    }
    return json_response(body, headers=_NO_STORE)


@router.post(
    "/api/v1/auth/token", summary="Sign in: email and password for an access and a refresh token"
)
async def token(request: Request, body: TokenRequest) -> Response:
    services = get_services(request)
    attempt = hashlib.sha256(body.email.strip().lower().encode()).hexdigest()[:24]
    await services.limiter.admit_bucket(
        f"login:{attempt}", per_minute=services.settings.login_attempts_per_minute
    )
    pair = await services.identity.sessions.login(
        body.email, body.password, project_id=body.project_id
    )
    return _tokens(pair)


@router.post(
    "/api/v1/auth/refresh", summary="A new token pair for a refresh token (rotated on every use)"
)
async def refresh(request: Request, body: RefreshRequest) -> Response:
    pair = await get_services(request).identity.sessions.refresh(body.refresh_token)
    return _tokens(pair)


@router.post(
    "/api/v1/auth/logout",
    status_code=204,
    summary="Sign out: revoke the refresh token and every token of its family",
)
async def logout(request: Request, body: RefreshRequest) -> Response:
    await get_services(request).identity.sessions.logout(body.refresh_token)
    return Response(status_code=204, headers=_NO_STORE)


@router.get(
    "/api/v1/whoami",
    summary="The caller as the gateway sees it (authenticated and rate limited like a model call)",
    dependencies=[Depends(rate_limit)],
)
async def whoami(principal: Annotated[Principal, Depends(authenticate)]) -> Response:
    return json_response(principal_view(principal))
