"""The usage, credits and budgets endpoints over real HTTP, on SQLite and PostgreSQL."""

from __future__ import annotations

import csv
import io
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta

import httpx
import pytest

from oneflow_ai.api.access import readable_project, require_budget_admin, require_credits_admin
from oneflow_ai.app import create_app
from oneflow_ai.auth.principal import MASTER, Principal, PrincipalKind, Role
from oneflow_ai.domain.usage_record import UsageRecord
from oneflow_ai.errors import PermissionDeniedError
from oneflow_ai.settings import DEFAULT_MASTER_KEY, Settings
from oneflow_ai.storage.database import create_engine
from oneflow_ai.storage.usage_store import insert_usage
from tests.support.ledger import create_projects
from tests.support.server import LiveServer, live_server

ADMIN = {"Authorization": f"Bearer {DEFAULT_MASTER_KEY}"}
NOW = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)


@pytest.fixture
async def seeded_url(database_url: str) -> str:
    engine = create_engine(database_url, pool_size=1)
    try:
        await create_projects(engine, "team-a", "team-b")
        records = [
            UsageRecord(
                request_id=f"r{i}",
                occurred_at=NOW - timedelta(hours=i % 5, minutes=7),
                status=502 if i % 10 == 0 else 200,
                project_id="team-a" if i % 3 else "team-b",
                key_id=f"key-{i % 2}",
                model="gpt-4o" if i % 2 else "claude-3-haiku-20240307",
                provider="openai" if i % 2 else "anthropic",
                input_tokens=100,
                output_tokens=10,
                micro_credits=1_000,
                latency_ms=100 + i,
            )
            for i in range(60)
        ]
        async with engine.begin() as c:
            await c.run_sync(insert_usage, records)
    finally:
        await engine.dispose()
    return database_url


@pytest.fixture
def server(make_settings: Callable[..., Settings], seeded_url: str) -> Iterator[LiveServer]:
    app = create_app(make_settings(database_url=seeded_url), configure_logs=False)
    with live_server(app) as running:
        yield running


def test_usage_needs_a_key(server: LiveServer) -> None:
    response = httpx.get(f"{server.url}/api/v1/usage")
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "invalid_api_key"


def test_usage_grouped_by_project_and_model(server: LiveServer) -> None:
    response = httpx.get(
        f"{server.url}/api/v1/usage",
        params={
            "group_by": "project,model",
            "from": (NOW - timedelta(days=1)).isoformat(),
            "to": (NOW + timedelta(hours=1)).isoformat(),
        },
        headers=ADMIN,
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["group_by"] == ["project", "model"]
    assert body["totals"]["requests"] == 60
    assert body["totals"]["errors"] == 6
    assert body["totals"]["credits"] == "0.060000" and body["totals"]["usd"] == "0.00060000"
    groups = {(g["project"], g["model"]): g for g in body["groups"]}
    assert sum(g["requests"] for g in groups.values()) == 60
    assert groups[("team-a", "gpt-4o")]["requests"] == 20
    assert groups[("team-a", "gpt-4o")]["latency_ms"]["p50"] is not None


def test_usage_filters_and_hourly_groups(server: LiveServer) -> None:
    response = httpx.get(
        f"{server.url}/api/v1/usage",
        params={"project": "team-b", "key": "key-0", "group_by": "hour"},
        headers=ADMIN,
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["filters"] == {"project": "team-b", "key": "key-0"}
    assert body["totals"]["requests"] == 10  # i % 3 == 0 and i even
    hours = [g["hour"] for g in body["groups"]]
    assert hours == sorted(hours) and all(h.endswith(":00:00Z") for h in hours)


def test_usage_as_csv(server: LiveServer) -> None:
    for path, params in (
        ("/api/v1/usage.csv", {"group_by": "model"}),
        ("/api/v1/usage", {"group_by": "model", "format": "csv"}),
    ):
        response = httpx.get(f"{server.url}{path}", params=params, headers=ADMIN)
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/csv")
        rows = list(csv.reader(io.StringIO(response.text)))
        assert rows[0][:2] == ["model", "requests"]
        assert sorted(int(r[1]) for r in rows[1:]) == [30, 30]


def test_bad_usage_parameters_are_400_naming_the_parameter(server: LiveServer) -> None:
    bad_group = httpx.get(f"{server.url}/api/v1/usage?group_by=color", headers=ADMIN)
    assert bad_group.status_code == 400
    assert bad_group.json()["error"]["param"] == "group_by"
    bad_time = httpx.get(f"{server.url}/api/v1/usage?from=yesterday", headers=ADMIN)
    assert bad_time.status_code == 400
    assert bad_time.json()["error"]["param"] == "from"


def test_credits_top_up_mode_and_ledger(server: LiveServer) -> None:
    url = f"{server.url}/api/v1/projects/team-a/credits"
    assert httpx.get(url, headers=ADMIN).json()["mode"] == "postpaid"

    topped = httpx.post(url, json={"credits": "12.5", "note": "invoice 42"}, headers=ADMIN)
    assert topped.status_code == 201, topped.text
    assert topped.json()["mode"] == "prepaid"
    assert topped.json()["balance"] == {
        "credits": "12.500000",
        "usd": "0.12500000",
        "micro_credits": 12_500_000,
    }
    adjusted = httpx.post(
        url, json={"usd": "-0.05", "kind": "adjustment", "mode": "postpaid"}, headers=ADMIN
    )
    assert adjusted.status_code == 201
    assert adjusted.json()["balance"]["credits"] == "7.500000"
    assert adjusted.json()["mode"] == "postpaid"
    assert httpx.patch(url, json={"mode": "prepaid"}, headers=ADMIN).json()["mode"] == "prepaid"

    entries = httpx.get(f"{server.url}/api/v1/projects/team-a/ledger", headers=ADMIN).json()
    assert [e["kind"] for e in entries["data"]] == ["adjustment", "topup"]
    assert entries["data"][1]["note"] == "invoice 42"


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"credits": 1.5}, "credits"),  # a JSON float
        ({"credits": "0.0000001"}, "credits"),  # finer than a micro-credit
        ({"credits": "-1"}, "credits"),  # a top-up must be positive
        ({"credits": "1", "usd": "1"}, None),  # one of them
    ],
)
def test_bad_amounts_are_refused(server: LiveServer, body: dict, param: str | None) -> None:
    response = httpx.post(f"{server.url}/api/v1/projects/team-a/credits", json=body, headers=ADMIN)
    assert response.status_code == 400, response.text
    assert response.json()["error"]["param"] in (param, None if param is None else param)


def test_unknown_project_is_404(server: LiveServer) -> None:
    response = httpx.post(
        f"{server.url}/api/v1/projects/nope/credits", json={"credits": "1"}, headers=ADMIN
    )
    assert response.status_code == 404


def test_budgets_put_and_get(server: LiveServer) -> None:
    url = f"{server.url}/api/v1/projects/team-a/budgets"
    body = {
        "budgets": [
            {"metric": "credits", "period": "month", "limit": "100", "mode": "hard"},
            {"metric": "requests", "period": "day", "limit": 1000, "user_id": "u1"},
            {"metric": "tokens", "period": "day", "limit": "50000", "provider": "anthropic",
             "mode": "soft"},
        ]
    }  # fmt: skip
    put = httpx.put(url, json=body, headers=ADMIN)
    assert put.status_code == 200, put.text
    got = httpx.get(url, headers=ADMIN).json()["data"]
    assert {(b["scope"], b["metric"], b["period"], b["mode"]) for b in got} == {
        ("project", "credits", "month", "hard"),
        ("user", "requests", "day", "hard"),
        ("provider", "tokens", "day", "soft"),
    }
    credits = next(b for b in got if b["metric"] == "credits")
    assert credits["limit"]["credits"] == "100.000000"
    assert credits["remaining"]["micro_credits"] == 100_000_000
    assert credits["resets_at"].endswith("T00:00:00Z")
    bad = httpx.put(
        url,
        json={"budgets": [{"metric": "tokens", "period": "week", "limit": 1}]},
        headers=ADMIN,
    )
    assert bad.status_code == 400
    assert httpx.put(url, json={"budgets": []}, headers=ADMIN).json()["data"] == []


def test_who_may_read_and_change_billing() -> None:
    member = Principal(kind=PrincipalKind.API_KEY, project_id="team-a", role=Role.MEMBER)
    viewer = Principal(kind=PrincipalKind.API_KEY, project_id="team-a", role=Role.VIEWER)
    project_admin = Principal(kind=PrincipalKind.USER, project_id="team-a", role=Role.ADMIN)
    assert readable_project(MASTER, None) is None  # system admins: every project
    assert readable_project(MASTER, "team-b") == "team-b"
    for principal in (member, viewer, project_admin):  # the others: their own only
        assert readable_project(principal, None) == "team-a"
        assert readable_project(principal, "team-a") == "team-a"
        with pytest.raises(PermissionDeniedError):
            readable_project(principal, "team-b")
    require_budget_admin(project_admin, "team-a")
    require_budget_admin(MASTER, "team-b")
    for principal, project in ((member, "team-a"), (viewer, "team-a"), (project_admin, "team-b")):
        with pytest.raises(PermissionDeniedError):
            require_budget_admin(principal, project)
    require_credits_admin(MASTER)
    for principal in (member, viewer, project_admin):  # money: system admins only
        with pytest.raises(PermissionDeniedError):
            require_credits_admin(principal)
