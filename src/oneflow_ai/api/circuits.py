"""`GET /api/v1/admin/circuits`: the state of every circuit breaker (system admins only)."""

from __future__ import annotations

import time
from dataclasses import asdict

from fastapi import APIRouter, Depends, Request
from starlette.responses import Response

from oneflow_ai.api.deps import get_services, require
from oneflow_ai.api.responses import json_response
from oneflow_ai.auth.permissions import Permission
from oneflow_ai.auth.principal import Principal
from oneflow_ai.storage.redis_errors import unreachable

__all__ = ["router"]

router = APIRouter(prefix="/api/v1/admin", tags=["admin"])


@router.get(
    "/circuits",
    summary="Circuit breakers: state, window counts and thresholds (system admins only)",
    responses={403: {"description": "The caller is not an admin of the admin project"}},
)
async def circuits(
    request: Request, _: Principal = Depends(require(Permission.OPERATIONS_READ))
) -> Response:
    breakers = get_services(request).breakers
    source = "redis" if breakers.shared else "process"
    try:
        snapshots = await breakers.load_all()
    except unreachable():
        snapshots, source = breakers.snapshots(), "cached"  # Redis is down: this replica's view
    now = time.time()
    return json_response(
        {
            "source": source,
            "circuits": [s.as_dict(now) for s in snapshots],
            "config": {
                "provider": asdict(breakers.provider_config),
                "model": asdict(breakers.model_config),
            },
        }
    )
