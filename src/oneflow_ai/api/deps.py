"""Typed access to the process's services, the caller, its permissions and its rate limits.

The integration surface for every router:

    # 401 unless a valid credential:
    principal: Annotated[Principal, Depends(authenticate)]
    # ... and 403 unless its role grants the permission:
    principal: Annotated[Principal, Depends(require(Permission.GATEWAY))]
    # 429 when over a limit:
    decision = await admit(request, principal, provider="openai", tokens=1200)

`authenticate` runs once per request however many dependencies ask for it (FastAPI caches it).
`admit` (or the `rate_limit` dependency, which admits with no provider and no tokens) must run
once per request; the `X-RateLimit-*` headers it decides are added to whatever response the
request ends with (by the edge middleware), and a refusal is a 429 carrying them plus
`Retry-After`.
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable
from typing import Annotated, Any

from fastapi import Depends
from starlette.requests import HTTPConnection

from oneflow_ai.api.call_log import CALL_STATE
from oneflow_ai.api.headers import wire_name
from oneflow_ai.auth.credentials import credential_from_headers
from oneflow_ai.auth.permissions import Permission, ensure_permission
from oneflow_ai.auth.principal import Principal
from oneflow_ai.errors import AuthenticationError
from oneflow_ai.gateway.call import Call
from oneflow_ai.gateway.services import Services
from oneflow_ai.limits import RateDecision

__all__ = [
    "RATE_LIMIT_STATE",
    "admit",
    "authenticate",
    "cache_headers",
    "get_services",
    "rate_limit",
    "rate_limit_headers",
    "request_id",
    "require",
]

# scope["state"] entry for the request's authenticated caller.
PRINCIPAL_STATE = "principal"
# scope["state"] entry for the rate-limit decision of a request that is not a model call.
RATE_LIMIT_STATE = "rate_limit"


def rate_limit_headers(state: dict[str, Any]) -> list[tuple[bytes, bytes]]:
    """The `X-RateLimit-*` headers of the request whose ASGI state is `state`: its model
    call's decision (the rate-limit hook's) or the `admit` dependency's; none without one."""
    call = state.get(CALL_STATE)
    decision = call.rate_limit if isinstance(call, Call) else state.get(RATE_LIMIT_STATE)
    if not isinstance(decision, RateDecision):
        return []
    return [(wire_name(name), value.encode()) for name, value in decision.headers.items()]


def cache_headers(state: dict[str, Any]) -> list[tuple[bytes, bytes]]:
    """`X-OneFlow-Cache: hit|miss|bypass` for a model call the response cache looked at, with
    `X-OneFlow-Cache-Similarity` for a semantic hit and `X-OneFlow-Cache-Embedding-Credits`
    when the semantic cache embedded the question (docs/cache.md)."""
    call = state.get(CALL_STATE)
    status = call.cache if isinstance(call, Call) else None
    if status is None:
        return []
    headers = [(b"x-oneflow-cache", status.result.encode())]
    if status.similarity is not None:
        headers.append((b"x-oneflow-cache-similarity", f"{status.similarity:.3f}".encode()))
    if status.embedding_cost is not None:
        credits = str(status.embedding_cost.credits).encode()
        headers.append((b"x-oneflow-cache-embedding-credits", credits))
    return headers


def get_services(connection: HTTPConnection) -> Services:
    """The process's services: the application's `services` attribute (set by its lifespan,
    `app.py`), else `app.state.services`."""
    app = connection.scope["app"]
    services: Services | None = getattr(app, "services", None)
    if services is None:
        services = app.state.services
    return services


def request_id(connection: HTTPConnection) -> str:
    value: str = connection.scope.get("state", {}).get("request_id", "")
    return value


async def authenticate(connection: HTTPConnection) -> Principal:
    """The caller, from `Authorization: Bearer`, `X-API-Key` or `x-api-key`: the master key, an
    API key, or a JWT access token; 401 otherwise. No database round trip when the key is warm,
    and once per request: the caller found first (by the idempotency middleware, say) is kept
    in the request's state for the endpoint."""
    state = connection.scope.setdefault("state", {})
    known = state.get(PRINCIPAL_STATE)
    if isinstance(known, Principal):
        return known
    credential = credential_from_headers(connection.scope["headers"])
    if credential is None:
        raise AuthenticationError(
            "No API key provided: send it as 'Authorization: Bearer <key>' or 'x-api-key: <key>'"
        )
    principal = await get_services(connection).identity.authenticate(credential)
    state[PRINCIPAL_STATE] = principal
    return principal


@functools.cache
def require(permission: Permission) -> Callable[[Principal], Awaitable[Principal]]:
    """A dependency: the authenticated caller, provided its role grants `permission` (403)."""

    async def dependency(principal: Annotated[Principal, Depends(authenticate)]) -> Principal:
        ensure_permission(principal, permission)
        return principal

    dependency.__name__ = f"require_{permission.name.lower()}"
    return dependency


async def admit(
    connection: HTTPConnection,
    principal: Principal,
    *,
    provider: str | None = None,
    tokens: int = 0,
) -> RateDecision:
    """Count this request against the caller's, its project's and `provider`'s limits.

    Raises `RateLimitedError` (429, `Retry-After`, `X-RateLimit-*`); on success the decision's
    headers go on the response."""
    decision = await get_services(connection).limiter.admit(
        principal, provider=provider, tokens=tokens
    )
    if decision.limit is not None:
        connection.scope.setdefault("state", {})[RATE_LIMIT_STATE] = decision
    return decision


async def rate_limit(
    connection: HTTPConnection, principal: Annotated[Principal, Depends(authenticate)]
) -> RateDecision:
    """A dependency: admit one request for the caller (no provider, no tokens)."""
    return await admit(connection, principal)
