"""Credits, billing mode, ledger entries and budgets of a project.

    GET   /api/v1/projects/{id}/credits   balance, reserved, available, mode   (usage:read)
    POST  /api/v1/projects/{id}/credits   top-up or adjustment                 (system admin)
    PATCH /api/v1/projects/{id}/credits   {"mode": "prepaid" | "postpaid"}     (system admin)
    GET   /api/v1/projects/{id}/ledger    entries, newest first                (usage:read)
    GET   /api/v1/projects/{id}/budgets   budgets with this period's usage     (usage:read)
    PUT   /api/v1/projects/{id}/budgets   replace the project's budgets        (project admin)

Reads are for the project's own credentials (any role) and for system admins (see
``api/access.py``).

Amounts are decimal strings or integers (``"12.5"`` credits), never JSON floats, and must be
whole micro-credits (1e-6 credit, 1e-8 USD).
"""

from __future__ import annotations

from decimal import Decimal, InvalidOperation
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Query, Request
from pydantic import Field, field_validator
from starlette.responses import Response

from oneflow_ai.api.access import (
    readable_project,
    require_budget_admin,
    require_credits_admin,
)
from oneflow_ai.api.bodies import Body, JsonRoute
from oneflow_ai.api.deps import authenticate, get_services
from oneflow_ai.api.responses import json_response
from oneflow_ai.auth.principal import Principal
from oneflow_ai.billing.budgets import BudgetMode, BudgetSpec, Metric, Period
from oneflow_ai.billing.ledger_admin import AccountView
from oneflow_ai.domain.money import (
    MICRO_CREDITS_PER_CREDIT,
    MICRO_CREDITS_PER_USD,
    micro_credits_to_credits,
    micro_credits_to_usd,
)
from oneflow_ai.errors import BadRequestError
from oneflow_ai.settings import PROVIDERS
from oneflow_ai.storage.ledger_store import EntryView

__all__ = ["router", "to_micro_credits"]

router = APIRouter(route_class=JsonRoute, prefix="/api/v1/projects", tags=["credits"])

Amount = str | int


def _no_float(value: object) -> object:
    if isinstance(value, float):
        raise ValueError('amounts are decimal strings such as "12.50" or integers, not floats')
    return value


def to_micro_credits(value: Amount, *, unit: Literal["credits", "usd"], param: str) -> int:
    """``value`` credits (or USD) as whole micro-credits; 400 when it is finer than that."""
    try:
        amount = Decimal(str(value).strip())
    except InvalidOperation:
        raise BadRequestError(f"'{param}' is not a decimal number", param=param) from None
    if not amount.is_finite():
        raise BadRequestError(f"'{param}' must be finite", param=param)
    scaled = amount * (MICRO_CREDITS_PER_CREDIT if unit == "credits" else MICRO_CREDITS_PER_USD)
    if scaled != scaled.to_integral_value():
        raise BadRequestError(
            f"'{param}' is finer than a micro-credit (1e-6 credit, 1e-8 USD)", param=param
        )
    return int(scaled)


def _money(micro_credits: int) -> dict[str, object]:
    return {
        "credits": f"{micro_credits_to_credits(micro_credits):f}",
        "usd": f"{micro_credits_to_usd(micro_credits):f}",
        "micro_credits": micro_credits,
    }


def _account(account: AccountView) -> dict[str, object]:
    return {"object": "credits", **account.as_dict()}


class CreditsChange(Body):
    """A top-up (positive) or an adjustment (signed), in credits or in USD."""

    credits: Amount | None = None
    usd: Amount | None = None
    kind: Literal["topup", "adjustment"] = "topup"
    note: str | None = Field(default=None, max_length=500)
    mode: Literal["prepaid", "postpaid"] | None = Field(
        default=None,
        description="Billing mode to set with it; a top-up makes a project prepaid by default",
    )

    _floats = field_validator("credits", "usd", mode="before")(_no_float)


class ModeChange(Body):
    mode: Literal["prepaid", "postpaid"]


class BudgetIn(Body):
    """One budget: ``limit`` is credits for the credits metric, a count otherwise."""

    user_id: str | None = Field(default=None, max_length=64)
    key_id: str | None = Field(default=None, max_length=64)
    provider: str | None = None
    metric: Literal["credits", "tokens", "requests"]
    period: Literal["day", "month"]
    limit: Amount
    mode: Literal["hard", "soft"] = "hard"

    _floats = field_validator("limit", mode="before")(_no_float)

    @field_validator("provider")
    @classmethod
    def _provider(cls, value: str | None) -> str | None:
        if value is not None and value not in PROVIDERS:
            raise ValueError(f"must be one of {', '.join(PROVIDERS)}")
        return value


class BudgetsIn(Body):
    budgets: list[BudgetIn] = Field(max_length=200)


@router.get("/{project_id}/credits", summary="A project's balance, holds and billing mode")
async def get_credits(
    project_id: str, request: Request, principal: Annotated[Principal, Depends(authenticate)]
) -> Response:
    readable_project(principal, project_id)
    account = await get_services(request).ledger.admin.account(project_id)
    return json_response(_account(account))


@router.post("/{project_id}/credits", status_code=201, summary="Top up or adjust credits")
async def post_credits(
    project_id: str,
    change: CreditsChange,
    request: Request,
    principal: Annotated[Principal, Depends(authenticate)],
) -> Response:
    require_credits_admin(principal)
    if (change.credits is None) == (change.usd is None):
        raise BadRequestError("give the amount as 'credits' or as 'usd' (one of them)")
    amount = (
        to_micro_credits(change.credits, unit="credits", param="credits")
        if change.credits is not None
        else to_micro_credits(change.usd or 0, unit="usd", param="usd")
    )
    ledger = get_services(request).ledger
    who = {"note": change.note, "user_id": principal.user_id, "key_id": principal.key_id}
    if change.kind == "topup":
        account = await ledger.top_up(project_id, amount, prepaid=change.mode != "postpaid", **who)
    else:
        account = await ledger.adjust(project_id, amount, **who)
    if change.mode is not None and account.mode != change.mode:
        account = await ledger.set_mode(project_id, change.mode)
    return json_response(_account(account), status_code=201)


@router.patch("/{project_id}/credits", summary="Set a project's billing mode")
async def patch_credits(
    project_id: str,
    change: ModeChange,
    request: Request,
    principal: Annotated[Principal, Depends(authenticate)],
) -> Response:
    require_credits_admin(principal)
    account = await get_services(request).ledger.set_mode(project_id, change.mode)
    return json_response(_account(account))


def _entry(entry: EntryView) -> dict[str, object]:
    return {
        "id": entry.id,
        "kind": entry.kind,
        "amount": _money(entry.amount),
        "request_id": entry.request_id,
        "model": entry.model,
        "provider": entry.provider,
        "input_tokens": entry.input_tokens,
        "output_tokens": entry.output_tokens,
        "images": entry.images,
        "characters": entry.characters,
        "price_table_version": entry.price_table_version,
        "estimated": entry.estimated,
        "user_id": entry.user_id,
        "key_id": entry.key_id,
        "note": entry.note,
        "created_at": entry.created_at.isoformat(),
    }


@router.get("/{project_id}/ledger", summary="A project's ledger entries, newest first")
async def get_ledger(
    project_id: str,
    request: Request,
    principal: Annotated[Principal, Depends(authenticate)],
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    before: Annotated[int | None, Query(ge=1, description="entries with a smaller id")] = None,
) -> Response:
    readable_project(principal, project_id)
    entries = await get_services(request).ledger.admin.entries(
        project_id, limit=limit + 1, before_id=before
    )
    return json_response(
        {
            "object": "list",
            "data": [_entry(e) for e in entries[:limit]],
            "has_more": len(entries) > limit,
        }
    )


@router.get("/{project_id}/budgets", summary="A project's budgets and this period's usage")
async def get_budgets(
    project_id: str, request: Request, principal: Annotated[Principal, Depends(authenticate)]
) -> Response:
    readable_project(principal, project_id)
    statuses = await get_services(request).ledger.admin.budgets(project_id)
    return json_response({"object": "list", "data": [s.as_dict() for s in statuses]})


@router.put("/{project_id}/budgets", summary="Replace a project's budgets")
async def put_budgets(
    project_id: str,
    body: BudgetsIn,
    request: Request,
    principal: Annotated[Principal, Depends(authenticate)],
) -> Response:
    require_budget_admin(principal, project_id)
    specs = []
    for index, item in enumerate(body.budgets):
        param = f"budgets[{index}].limit"
        if item.metric == "credits":
            limit = to_micro_credits(item.limit, unit="credits", param=param)
        else:
            try:
                limit = int(str(item.limit))
            except ValueError:
                raise BadRequestError(f"'{param}' must be a whole number", param=param) from None
        if limit < 0:
            raise BadRequestError(f"'{param}' must not be negative", param=param)
        specs.append(
            BudgetSpec(
                id="",
                project_id=project_id,
                metric=Metric(item.metric),
                period=Period(item.period),
                limit=limit,
                mode=BudgetMode(item.mode),
                user_id=item.user_id or None,
                key_id=item.key_id or None,
                provider=item.provider,
            )
        )
    statuses = await get_services(request).ledger.set_budgets(project_id, specs)
    return json_response({"object": "list", "data": [s.as_dict() for s in statuses]})
