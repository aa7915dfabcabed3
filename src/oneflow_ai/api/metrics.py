"""`GET /metrics`: the Prometheus exposition (mounted only when ``ENABLE_METRICS`` is on).

Open by default: Prometheus scrapes each pod on its own address inside the cluster, and the
public ingress does not route ``/metrics``. When the port is reachable from outside, set
``METRICS_TOKEN``; the endpoint then wants ``Authorization: Bearer <token>`` (Prometheus's
``authorization`` scrape setting sends it).
"""

from __future__ import annotations

from fastapi import APIRouter, Request
from starlette.responses import Response

from oneflow_ai.api.deps import get_services
from oneflow_ai.auth.credentials import credential_from_headers, secrets_equal
from oneflow_ai.errors import AuthenticationError

__all__ = ["router"]

router = APIRouter(tags=["observability"])


@router.get(
    "/metrics",
    summary="Prometheus metrics of this gateway (all worker processes)",
    response_class=Response,
    responses={
        200: {"content": {"text/plain": {}}, "description": "Prometheus text format"},
        401: {"description": "METRICS_TOKEN is set and the request does not carry it"},
    },
)
async def metrics(request: Request) -> Response:
    services = get_services(request)
    token = services.settings.metrics_token
    if token is not None:
        given = credential_from_headers(request.scope["headers"])
        if given is None or not secrets_equal(given, token.get_secret_value()):
            raise AuthenticationError(
                "GET /metrics needs 'Authorization: Bearer <METRICS_TOKEN>'",
                code="invalid_metrics_token",
            )
    body, content_type = services.telemetry.metrics.render(request.headers.get("accept"))
    return Response(body, media_type=content_type, headers={"cache-control": "no-store"})
