"""The request log after real traffic through the gateway (fake providers, SQLite and PostgreSQL):
one row per request that adds up to `/api/v1/usage` exactly, fallbacks and failures with their
attempts, refusals without any; a key's own view of its limits and budgets; prompt and answer
bodies only for a project that opts in, redacted, and only for its admins."""

from __future__ import annotations

import time
from collections.abc import Iterator
from decimal import Decimal

import httpx
import pytest

from oneflow_fakes import FaultRule
from tests.support.audio import wav
from tests.support.billing_world import BillingWorld, billing_world, chat_body

#: What cost_optimized tries first (see tests/e2e/test_strategies_gateway.py).
HAIKU = "claude-3-haiku-20240307"


@pytest.fixture(scope="module")
def world(module_database_url: str) -> Iterator[BillingWorld]:
    with billing_world(module_database_url, reply_words=30) as running:
        yield running


def _ask(world: BillingWorld, key: str, body: dict[str, object]) -> httpx.Response:
    return world.admin.post(
        "/v1/chat/completions", json=body, headers={"Authorization": f"Bearer {key}"}
    )


def _log(world: BillingWorld, **params: str) -> list[dict]:
    rows: list[dict] = []
    cursor = ""
    while True:
        page = world.admin_call("GET", "/api/v1/requests", limit="3", cursor=cursor, **params)
        rows.extend(page.json()["data"])
        cursor = page.json()["next_cursor"]
        if cursor is None:
            return rows


def test_the_log_adds_up_to_the_usage_report(world: BillingWorld) -> None:
    project, key = world.project("log")
    throttled = world.key(project, limits={"requests_per_minute": 1})
    assert _ask(world, key, chat_body(20)).status_code == 200
    assert _ask(world, key, chat_body(20, model=HAIKU, stream=True)).status_code == 200
    world.fakes.add_fault(FaultRule(model="gpt-4-turbo*", status=500))
    world.fakes.add_fault(FaultRule(model=f"{HAIKU}*", status=503))
    try:
        failed = _ask(world, key, chat_body(20, model="gpt-4-turbo"))
        assert failed.status_code >= 500
        routed = _ask(world, key, chat_body(20, model="cost_optimized"))
        assert routed.status_code == 200 and routed.headers["x-oneflow-fallbacks"] == "1"
    finally:
        world.fakes.reset()
    assert _ask(world, throttled, chat_body(20)).status_code == 200
    assert _ask(world, throttled, chat_body(20)).status_code == 429

    rows = _log(world, project=project)
    usage = world.admin_call("GET", "/api/v1/usage", project=project).json()["totals"]
    assert len(rows) == usage["requests"] == 6
    assert sum(r["status"] >= 400 for r in rows) == usage["errors"] == 2
    assert sum(r["input_tokens"] for r in rows) == usage["input_tokens"]
    assert sum(r["output_tokens"] for r in rows) == usage["output_tokens"]
    assert sum(Decimal(r["credits"]) for r in rows) == Decimal(usage["credits"])
    assert sum(r["fallbacks"] > 0 for r in rows) == usage["fallback_requests"] == 1

    by_id = {r["id"]: r for r in rows}
    fell_back = by_id[routed.headers["x-oneflow-request-id"]]
    assert (fell_back["model_requested"], fell_back["strategy"]) == ("cost_optimized",) * 2
    assert fell_back["model"] != HAIKU and fell_back["fallbacks"] == 1
    # The log keeps the reason the answer gave (X-OneFlow-Route).
    assert fell_back["route_reason"] == routed.headers["x-oneflow-route"]
    assert fell_back["route_reason"].startswith("fallback: ")
    detail = world.admin_call("GET", f"/api/v1/requests/{fell_back['id']}").json()["route"]
    assert detail["candidates"][0] == HAIKU and len(detail["candidates"]) >= 2
    assert [(a["model"], a["error"] is None) for a in detail["attempts"]] == [
        (HAIKU, False),
        (fell_back["model"], True),
    ]

    broken = by_id[failed.headers["x-oneflow-request-id"]]
    assert broken["status"] == failed.status_code and broken["error"]
    attempts = world.admin_call("GET", f"/api/v1/requests/{broken['id']}").json()["route"]
    assert [a["model"] for a in attempts["attempts"]] == ["gpt-4-turbo"]
    assert attempts["attempts"][0]["error"] == broken["error"]

    refused = next(r for r in rows if r["status"] == 429)
    assert refused["error"] == "rate_limited" and refused["credits"] == "0.000000"
    assert (
        world.admin_call("GET", f"/api/v1/requests/{refused['id']}").json()["route"]["attempts"]
        == []
    )


def test_a_key_sees_its_windows_and_budgets(world: BillingWorld) -> None:
    project, _ = world.project("own")
    key = world.key(project, limits={"requests_per_minute": 5, "tokens_per_minute": 10_000})
    world.budgets(
        project,
        {"key_id": world.key_ids[key], "metric": "requests", "period": "day", "limit": "50"},
        {"metric": "credits", "period": "month", "limit": "100"},
    )
    for _ in range(2):
        assert _ask(world, key, chat_body(20)).status_code == 200
    made = httpx.post(
        f"{world.url}/api/v1/auth/key-session", headers={"Authorization": f"Bearer {key}"}
    )
    session = {"Authorization": f"Bearer {made.json()['access_token']}"}
    own = httpx.get(f"{world.url}/api/v1/self", headers=session).json()
    windows = {w["name"]: w for w in own["limits"]}
    assert windows["requests_per_minute"]["limit"] == 5
    assert windows["requests_per_minute"]["used"] == 2
    assert windows["tokens_per_minute"]["used"] > 0
    budgets = {(b["scope"], b["metric"]): b for b in own["budgets"]}
    assert budgets[("key", "requests")]["used"] == 2
    assert budgets[("project", "credits")]["limit"]["credits"] == "100.000000"
    assert own["credits"] == {"mode": "postpaid"}


def _body_of(world: BillingWorld, request_id: str, credential: str | None = None) -> dict:
    """The request's details as the master key (waiting until its body, written off the
    request path, is stored) or as `credential` (at once)."""
    headers = {"Authorization": f"Bearer {credential}"} if credential else None
    deadline = time.monotonic() + 10
    while True:
        detail = world.admin.get(f"/api/v1/requests/{request_id}", headers=headers).json()
        if credential or detail.get("bodies") is not None or time.monotonic() > deadline:
            return detail
        time.sleep(0.05)


def test_bodies_are_stored_only_by_opt_in_redacted_for_admins(world: BillingWorld) -> None:
    opted, key = world.project("bodies")
    other, other_key = world.project("quiet")
    world.admin_call(
        "PUT",
        f"/api/v1/projects/{opted}/request-log",
        {"store_bodies": True, "retention_days": 3, "redact": ["emails"]},
    )
    prompt = "Mail ana@example.com; my key is sk-live-0123456789abcdef. Say hi."
    body = {"model": "gpt-4o", "messages": [{"role": "user", "content": prompt}], "max_tokens": 20}
    plain = _ask(world, key, body)
    streamed = _ask(world, key, {**body, "stream": True})
    quiet = _ask(world, other_key, body)
    assert {plain.status_code, streamed.status_code, quiet.status_code} == {200}

    stored = _body_of(world, plain.headers["x-oneflow-request-id"])["bodies"]
    content = stored["request"]["messages"][0]["content"]
    assert "ana@example.com" not in content and "[EMAIL]" in content
    assert "sk-live-0123456789abcdef" not in content and "[REDACTED]" in content
    # The fake echoes the prompt: the answer is redacted by the same rules.
    answer = plain.json()["choices"][0]["message"]["content"]
    assert "ana@example.com" in answer
    assert stored["response"]["text"] == answer.replace("ana@example.com", "[EMAIL]").replace(
        "sk-live-0123456789abcdef", "[REDACTED]"
    )
    streamed_body = _body_of(world, streamed.headers["x-oneflow-request-id"])["bodies"]
    assert streamed_body["response"]["text"]

    member = _body_of(world, plain.headers["x-oneflow-request-id"], credential=key)
    assert "bodies" not in member  # a member key reads the row, never the body
    # Written in the same flush as the opted-in ones had it been kept: it was not.
    quiet_detail = world.admin_call(
        "GET", f"/api/v1/requests/{quiet.headers['x-oneflow-request-id']}"
    )
    assert quiet_detail.json()["bodies"] is None
    policy = world.admin_call("GET", f"/api/v1/projects/{other}/request-log").json()
    assert policy["store_bodies"] is False


def test_bodies_of_embeddings_and_transcriptions(world: BillingWorld) -> None:
    opted, key = world.project("surface")
    world.admin_call(
        "PUT",
        f"/api/v1/projects/{opted}/request-log",
        {"store_bodies": True, "retention_days": 3, "redact": ["emails"]},
    )
    headers = {"Authorization": f"Bearer {key}"}
    embedded = world.admin.post(
        "/v1/embeddings",
        json={"model": "text-embedding-3-small", "input": ["write to ana@example.com", [1, 2]]},
        headers=headers,
    )
    assert embedded.status_code == 200, embedded.text
    stored = _body_of(world, embedded.headers["x-oneflow-request-id"])["bodies"]
    assert stored["request"]["input"] == ["write to [EMAIL]", "<2 tokens>"]
    assert stored["response"] == {"vectors": 2, "dimensions": 1536}
    audio = wav(3)
    transcribed = world.admin.post(
        "/v1/audio/transcriptions",
        data={"model": "whisper-1", "prompt": "ana@example.com spoke"},
        files={"file": ("talk.wav", audio, "audio/wav")},
        headers=headers,
    )
    assert transcribed.status_code == 200, transcribed.text
    stored = _body_of(world, transcribed.headers["x-oneflow-request-id"])["bodies"]
    assert stored["request"] == {
        "model": "whisper-1",
        "file": "talk.wav",
        "bytes": len(audio),
        "prompt": "[EMAIL] spoke",
    }
    assert stored["response"] == {"text": transcribed.json()["text"], "audio_seconds": 3}
