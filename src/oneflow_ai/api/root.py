"""`GET /`: a browser pointed at the gateway lands on the interactive API docs (`/docs`)."""

from __future__ import annotations

from fastapi import APIRouter, Request
from starlette.responses import RedirectResponse

__all__ = ["router"]

router = APIRouter()


@router.get("/", include_in_schema=False)
async def root(request: Request) -> RedirectResponse:
    # Behind a proxy that serves the gateway under a prefix, the docs are under it too.
    prefix = str(request.scope.get("root_path", "")).rstrip("/")
    return RedirectResponse(f"{prefix}/docs", status_code=307)
