"""`GET /api/v1/requests` over seeded usage records, on SQLite and PostgreSQL: cursor pages that
neither repeat nor skip, filters, who reads what (self-service sessions included), details."""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import httpx
import pytest

from oneflow_ai.app import create_app
from oneflow_ai.domain.usage_record import AttemptSummary, RequestRoute, UsageRecord
from oneflow_ai.settings import Settings
from oneflow_ai.storage.database import create_engine
from oneflow_ai.storage.request_log import Cursor
from oneflow_ai.storage.usage_store import insert_usage
from tests.support.server import LiveServer, live_server

MASTER = "sk-master-for-request-log-tests-0123456789"
NOW = datetime.now(UTC).replace(microsecond=0)
RECORDS = 90


@dataclass
class World:
    server: LiveServer
    keys: dict[str, str]  # name -> secret
    key_ids: dict[str, str]  # name -> id

    def get(self, path: str, credential: str = MASTER, **params: object) -> httpx.Response:
        return httpx.get(
            f"{self.server.url}{path}",
            params={name: value for name, value in params.items() if value is not None},
            headers={"Authorization": f"Bearer {credential}"},
            timeout=30,
        )


def _record(i: int, key_ids: dict[str, str]) -> UsageRecord:
    """Record i: three keys over two projects, two models, some errors and fallbacks; a few
    share one timestamp so that the id breaks the tie."""
    key = ("a-member", "a-viewer", "b-member")[i % 3]
    route = RequestRoute(
        model_requested="auto" if i % 4 == 0 else "gpt-4o",
        strategy="cost_optimized" if i % 4 == 0 else None,
        fallbacks=1 if i % 9 == 0 else 0,
        candidates=("gpt-4o", "claude-3-haiku-20240307") if i % 9 == 0 else (),
        attempts=(
            AttemptSummary("gpt-4o", "openai", 30, "provider_error", 502, "upstream said no"),
            AttemptSummary("claude-3-haiku-20240307", "anthropic", 40),
        )
        if i % 9 == 0
        else (),
    )
    return UsageRecord(
        request_id=f"req-{i:03d}",
        occurred_at=NOW - timedelta(minutes=(i // 3) * 7),
        status=502 if i % 10 == 5 else 200,
        error="provider_error" if i % 10 == 5 else None,
        project_id="proj-b" if key == "b-member" else "proj-a",
        key_id=key_ids[key],
        model="claude-3-haiku-20240307" if i % 9 == 0 else "gpt-4o",
        provider="anthropic" if i % 9 == 0 else "openai",
        input_tokens=100 + i,
        output_tokens=10 + i,
        micro_credits=1_000 * (i + 1),
        latency_ms=50 + i,
        ttft_ms=20 + i,
        route=route,
    )


@pytest.fixture(scope="module")
async def world(module_database_url: str) -> AsyncIterator[World]:
    """One gateway per backend for the module, its records seeded once (tests only read,
    except the revocation at the end of the session test, on a key of its own)."""
    settings = Settings(
        _env_file=None,  # type: ignore[call-arg]
        database_url=module_database_url,
        oneflow_master_key=MASTER,
        rate_limit_per_minute=0,
        log_format="json",
        log_requests=False,
    )
    with live_server(create_app(settings, configure_logs=False)) as server:
        admin = {"Authorization": f"Bearer {MASTER}"}
        keys: dict[str, str] = {}
        key_ids: dict[str, str] = {}
        for project in ("proj-a", "proj-b"):
            made = httpx.post(
                f"{server.url}/api/v1/projects",
                json={"name": project, "id": project},
                headers=admin,
            )
            assert made.status_code == 201, made.text
        for name, project, role in (
            ("a-member", "proj-a", "member"),
            ("a-viewer", "proj-a", "viewer"),
            ("b-member", "proj-b", "member"),
            ("a-revoked", "proj-a", "member"),
        ):
            made = httpx.post(
                f"{server.url}/api/v1/keys",
                json={"name": name, "project_id": project, "role": role},
                headers=admin,
            )
            assert made.status_code == 201, made.text
            keys[name], key_ids[name] = made.json()["key"], made.json()["id"]
        engine = create_engine(module_database_url, pool_size=1)
        try:
            async with engine.begin() as connection:
                records = [_record(i, key_ids) for i in range(RECORDS)]
                await connection.run_sync(insert_usage, records)
        finally:
            await engine.dispose()
        yield World(server, keys, key_ids)


def _session(world: World, key: str) -> str:
    made = httpx.post(
        f"{world.server.url}/api/v1/auth/key-session",
        headers={"Authorization": f"Bearer {key}"},
    )
    assert made.status_code == 200, made.text
    assert made.headers["cache-control"] == "no-store"
    assert made.json()["scope"] == "self"
    token: str = made.json()["access_token"]
    return token


def _all_pages(world: World, credential: str = MASTER, **params: object) -> list[dict]:
    rows: list[dict] = []
    cursor = None
    while True:
        page = world.get("/api/v1/requests", credential, limit=7, cursor=cursor, **params)
        assert page.status_code == 200, page.text
        body = page.json()
        rows.extend(body["data"])
        assert body["has_more"] == (body["next_cursor"] is not None)
        if not body["has_more"]:
            return rows
        cursor = body["next_cursor"]


def test_pages_walk_every_record_once_newest_first(world: World) -> None:
    rows = _all_pages(world)
    assert sorted(r["id"] for r in rows) == sorted(f"req-{i:03d}" for i in range(RECORDS))
    times = [r["time"] for r in rows]
    assert times == sorted(times, reverse=True)
    # Ties on time come out in one order, newest record first.
    assert [r["id"] for r in rows[:3]] == ["req-002", "req-001", "req-000"]


def test_a_row_says_what_happened(world: World) -> None:
    row = next(r for r in _all_pages(world, project="proj-a") if r["id"] == "req-036")
    assert row["model_requested"] == "auto" and row["strategy"] == "cost_optimized"
    assert row["model"] == "claude-3-haiku-20240307" and row["fallbacks"] == 1
    assert (row["input_tokens"], row["output_tokens"]) == (136, 46)
    assert row["credits"] == "0.037000" and row["usd"] == "0.00037000"
    assert (row["latency_ms"], row["ttft_ms"], row["status"]) == (86, 56, 200)
    assert row["cached_input_tokens"] == 0 and row["cache_hit"] is False


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        ({"project": "proj-b"}, {i for i in range(RECORDS) if i % 3 == 2}),
        ({"status": "error"}, {i for i in range(RECORDS) if i % 10 == 5}),
        ({"status": "502", "project": "proj-a"}, {i for i in range(RECORDS) if i % 30 in (15, 25)}),
        ({"model": "claude-3-haiku-20240307"}, {i for i in range(RECORDS) if i % 9 == 0}),
        ({"strategy": "cost_optimized"}, {i for i in range(RECORDS) if i % 4 == 0}),
        (
            {"provider": "openai", "status": "ok"},
            {i for i in range(RECORDS) if i % 9 and i % 10 != 5},
        ),
    ],
)
def test_filters(world: World, params: dict[str, str], expected: set[int]) -> None:
    rows = _all_pages(world, **params)
    assert {int(r["id"][4:]) for r in rows} == expected


def test_time_range_and_key_filter(world: World) -> None:
    start = (NOW - timedelta(minutes=70)).isoformat()
    end = (NOW - timedelta(minutes=13)).isoformat()
    rows = _all_pages(world, key=world.key_ids["a-viewer"], **{"from": start, "to": end})
    # Records 6..32 fall in (NOW-70 min, NOW-13 min]; the viewer's key has every third one.
    assert {int(r["id"][4:]) for r in rows} == {i for i in range(6, 33) if i % 3 == 1}


@pytest.mark.parametrize(
    ("params", "param"),
    [
        ({"cursor": "not-a-cursor"}, "cursor"),
        ({"cursor": base64.urlsafe_b64encode(b"x.1").decode()}, "cursor"),
        ({"status": "bad"}, "status"),
        ({"status": "700"}, "status"),
        ({"from": "yesterday"}, "from"),
    ],
)
def test_bad_input_is_a_400_naming_the_parameter(
    world: World, params: dict[str, str], param: str
) -> None:
    response = world.get("/api/v1/requests", **params)
    assert response.status_code == 400, response.text
    assert response.json()["error"]["param"] == param


def test_limit_out_of_range_is_refused(world: World) -> None:
    assert world.get("/api/v1/requests", limit=0).status_code in (400, 422)
    assert world.get("/api/v1/requests", limit=201).status_code in (400, 422)


def test_cursor_round_trips() -> None:
    cursor = Cursor(datetime(2026, 12, 1, 10, 0, 0, 123456, tzinfo=UTC), 42)
    assert Cursor.decode(cursor.encode()) == cursor


def test_a_project_credential_reads_its_own_project_only(world: World) -> None:
    viewer = world.keys["a-viewer"]
    rows = _all_pages(world, viewer)
    assert {r["project_id"] for r in rows} == {"proj-a"}
    assert len(rows) == RECORDS * 2 // 3
    other = world.get("/api/v1/requests", viewer, project="proj-b")
    assert other.status_code == 403
    assert other.json()["error"]["code"] == "project_forbidden"


def test_scope_self_reads_the_callers_own_key(world: World) -> None:
    member = world.keys["a-member"]
    rows = _all_pages(world, member, scope="self")
    assert {r["key_id"] for r in rows} == {world.key_ids["a-member"]}
    refused = world.get("/api/v1/requests", member, scope="self", key=world.key_ids["a-viewer"])
    assert refused.status_code == 403 and refused.json()["error"]["code"] == "self_scope"


def test_a_self_service_session_sees_its_key_and_nothing_else(world: World) -> None:
    session = _session(world, world.keys["a-member"])
    rows = _all_pages(world, session)  # no scope asked: a session reads its own anyway
    assert {r["key_id"] for r in rows} == {world.key_ids["a-member"]}
    usage = world.get("/api/v1/usage", session, **{"from": (NOW - timedelta(days=1)).isoformat()})
    assert usage.status_code == 200
    assert usage.json()["totals"]["requests"] == len(rows)
    own = world.get("/api/v1/self", session)
    assert own.status_code == 200 and own.json()["key"]["name"] == "a-member"

    for path in ("/api/v1/keys", "/api/v1/projects/proj-a/credits", "/api/v1/projects"):
        refused = world.get(path, session)
        assert refused.status_code == 403, (path, refused.text)
        assert refused.json()["error"]["code"] == "self_service_only"
    chat = httpx.post(
        f"{world.server.url}/v1/chat/completions",
        json={"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}]},
        headers={"Authorization": f"Bearer {session}"},
    )
    assert chat.status_code == 403


def test_a_revoked_key_ends_its_sessions(world: World) -> None:
    session = _session(world, world.keys["a-revoked"])
    assert world.get("/api/v1/self", session).status_code == 200
    key_id = world.key_ids["a-revoked"]
    revoked = httpx.post(
        f"{world.server.url}/api/v1/keys/{key_id}/revoke",
        headers={"Authorization": f"Bearer {MASTER}"},
    )
    assert revoked.status_code == 200
    after = world.get("/api/v1/self", session)
    assert after.status_code == 401 and after.json()["error"]["code"] == "key_revoked"


def test_a_session_is_made_from_an_api_key_only(world: World) -> None:
    response = httpx.post(
        f"{world.server.url}/api/v1/auth/key-session",
        headers={"Authorization": f"Bearer {MASTER}"},
    )
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "not_an_api_key"


def test_details_show_the_route_and_attempts(world: World) -> None:
    detail = world.get("/api/v1/requests/req-009")
    assert detail.status_code == 200, detail.text
    route = detail.json()["route"]
    assert route["candidates"] == ["gpt-4o", "claude-3-haiku-20240307"]
    assert [a["error"] for a in route["attempts"]] == ["provider_error", None]
    assert route["attempts"][0]["message"] == "upstream said no"
    assert detail.json()["bodies"] is None  # the project stores none

    plain = world.get("/api/v1/requests/req-001").json()["route"]
    assert plain["attempts"] == [
        {
            "model": "gpt-4o",
            "provider": "openai",
            "latency_ms": 51,
            "error": None,
            "status": None,
            "message": None,
        }
    ]
    assert "bodies" not in world.get("/api/v1/requests/req-001", world.keys["a-viewer"]).json()


def test_details_of_another_project_are_not_found(world: World) -> None:
    response = world.get("/api/v1/requests/req-002", world.keys["a-viewer"])  # proj-b's
    assert response.status_code == 404


def test_csv_page_equals_the_json_page(world: World) -> None:
    as_json = world.get("/api/v1/requests", limit=10).json()
    as_csv = world.get("/api/v1/requests", limit=10, format="csv")
    assert as_csv.status_code == 200
    assert as_csv.headers["x-oneflow-next-cursor"] == as_json["next_cursor"]
    lines = as_csv.text.splitlines()
    assert lines[0].startswith("id,time,project_id")
    assert [line.split(",")[0] for line in lines[1:]] == [r["id"] for r in as_json["data"]]
