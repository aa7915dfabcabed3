"""`GET`/`PUT /api/v1/projects/{id}/request-log`: whether a project stores prompts and answers.

    {"store_bodies": true, "retention_days": 7, "redact": ["emails", "card_numbers"]}

Off by default. Credentials are always redacted; `redact` adds the optional rules
(`emails`, `card_numbers`, `phone_numbers`). Stored bodies are shown to admins only (see
`api/requests.py`) and deleted `retention_days` after their request. Reading the policy takes
`usage:read` of the project; changing it, an admin of the project (or a system admin). The
change applies at once on this replica and within seconds on the others.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Request
from pydantic import Field, field_validator
from starlette.responses import Response

from oneflow_ai.api.access import readable_project, require_project_admin
from oneflow_ai.api.bodies import Body, JsonRoute
from oneflow_ai.api.deps import authenticate, get_services
from oneflow_ai.api.responses import json_response
from oneflow_ai.auth.principal import Principal
from oneflow_ai.errors import NotFoundError
from oneflow_ai.gateway.body_log import REDACTION_RULES
from oneflow_ai.storage.ledger_store import project_exists
from oneflow_ai.storage.request_bodies import BodyPolicy, get_policy, set_policy

__all__ = ["router"]

router = APIRouter(route_class=JsonRoute, prefix="/api/v1/projects", tags=["requests"])


class PolicyIn(Body):
    store_bodies: bool
    retention_days: int = Field(default=7, ge=1, le=3650)
    redact: list[str] = Field(default_factory=list, max_length=len(REDACTION_RULES))

    @field_validator("redact")
    @classmethod
    def _known_rules(cls, value: list[str]) -> list[str]:
        unknown = [name for name in value if name not in REDACTION_RULES]
        if unknown:
            raise ValueError(
                f"unknown redaction rule {unknown[0]!r}: use {', '.join(REDACTION_RULES)}"
            )
        return sorted(set(value))


def _view(project_id: str, policy: BodyPolicy) -> dict[str, object]:
    return {"object": "request_log_policy", "project_id": project_id, **policy.as_dict()}


@router.get("/{project_id}/request-log", summary="Whether the project stores prompts and answers")
async def get_request_log_policy(
    project_id: str, request: Request, principal: Annotated[Principal, Depends(authenticate)]
) -> Response:
    readable_project(principal, project_id)
    async with get_services(request).engine.connect() as connection:
        policy = await get_policy(connection, project_id)
    return json_response(_view(project_id, policy))


@router.put("/{project_id}/request-log", summary="Store the project's prompts and answers, or stop")
async def put_request_log_policy(
    project_id: str,
    body: PolicyIn,
    request: Request,
    principal: Annotated[Principal, Depends(authenticate)],
) -> Response:
    require_project_admin(principal, project_id, "change the request log policy")
    services = get_services(request)
    policy = BodyPolicy(body.store_bodies, body.retention_days, tuple(body.redact))
    async with services.engine.begin() as connection:
        if not await project_exists(connection, project_id):
            raise NotFoundError(f"No project '{project_id}'", code="project_not_found")
        await set_policy(connection, project_id, policy)
    services.bodies.forget(project_id)
    return json_response(_view(project_id, policy))
