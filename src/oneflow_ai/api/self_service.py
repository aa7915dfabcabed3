"""Self-service for an API key holder: a session that sees the key's own data, and that data.

    POST /api/v1/auth/key-session   an API key -> a self-service access token (scope "self")
    GET  /api/v1/self               the caller's key, limits with what is used of each window
                                    now, the budgets that apply to it, the credits it can spend

A self-service session's token reads `GET /api/v1/self` and the caller's own usage and
requests (`/api/v1/usage`, `/api/v1/requests`, which narrow themselves to its key) and is
refused (403) everything else, whatever the key's role: the console gives it to someone who
signs in with just a key, so that the page can show that key's data and nothing else of the
project. It lasts `JWT_ACCESS_TTL_SECONDS` and stops working as soon as its key does
(revoked, expired, rotated past its grace). Any credential may read `GET /api/v1/self`.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from starlette.responses import Response

from oneflow_ai.api.deps import authenticate, get_services
from oneflow_ai.api.responses import json_response
from oneflow_ai.api.views import key_view, principal_view
from oneflow_ai.auth.api_keys import parse_key
from oneflow_ai.auth.credentials import credential_from_headers
from oneflow_ai.auth.permissions import Permission, ensure_permission
from oneflow_ai.auth.principal import Principal, PrincipalKind
from oneflow_ai.billing.ledger_admin import BudgetStatus
from oneflow_ai.errors import BadRequestError

__all__ = ["router"]

router = APIRouter(prefix="/api/v1", tags=["self-service"])

_NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}
# The OAuth 2 token type (RFC 6750), not a secret.
_TOKEN_TYPE = "bearer"  # noqa: S105  # nosec B105


@router.post(
    "/auth/key-session",
    summary="Exchange an API key for a self-service session: its own usage, requests, limits",
)
async def key_session(
    request: Request, principal: Annotated[Principal, Depends(authenticate)]
) -> Response:
    credential = credential_from_headers(request.scope["headers"]) or ""
    parsed = parse_key(credential)
    if principal.kind is not PrincipalKind.API_KEY or principal.key_id is None or parsed is None:
        raise BadRequestError(
            "Send an API key (sk-of-...): a self-service session is made from a key",
            code="not_an_api_key",
        )
    codec = get_services(request).identity.codec
    issued = codec.issue_self_session(
        key_id=principal.key_id,
        key_prefix=parsed[0],
        project_id=principal.project_id,
        role=principal.role.value,
    )
    body = {
        "access_token": issued.token,
        "token_type": _TOKEN_TYPE,
        "expires_in": issued.expires_in,
        "scope": "self",
        "key_id": principal.key_id,
        "project_id": principal.project_id,
        "role": principal.role.value,
    }
    return json_response(body, headers=_NO_STORE)


@router.get("/self", summary="Your key, its limits and their use now, budgets, spendable credits")
async def self_summary(
    request: Request, principal: Annotated[Principal, Depends(authenticate)]
) -> Response:
    ensure_permission(principal, Permission.SELF_READ)
    services = get_services(request)
    key = await services.identity.keys.own(principal)
    windows = await services.limiter.windows(principal)
    body: dict[str, Any] = {
        "object": "self",
        "principal": principal_view(principal),
        "key": key_view(key, services.identity.clock()) if key is not None else None,
        "limits": [window._asdict() for window in windows],
        "unlimited": principal.unlimited,
        "budgets": [s.as_dict() for s in await _own_budgets(request, principal)],
        "credits": None,
    }
    account = await services.ledger.admin.account(principal.project_id)
    if account.mode == "prepaid":
        body["credits"] = {"mode": account.mode, "available": account.as_dict()["available"]}
    else:
        body["credits"] = {"mode": account.mode}
    return json_response(body)


async def _own_budgets(request: Request, principal: Principal) -> list[BudgetStatus]:
    """The project's budgets that count this caller's requests (its key's or user's, or the
    whole project's)."""
    statuses = await get_services(request).ledger.admin.budgets(principal.project_id)
    return [
        status
        for status in statuses
        if (status.spec.key_id is None or status.spec.key_id == principal.key_id)
        and (status.spec.user_id is None or status.spec.user_id == principal.user_id)
    ]
