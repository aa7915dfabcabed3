"""Who may call models, and how much: the identity layer's roles, model allow-lists and rate
limits applied to the gateway's model endpoints (through the pipeline's rate-limit hook)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import anthropic
import openai
import pytest
from sqlalchemy import update

from oneflow_ai.storage.database import create_engine
from oneflow_ai.storage.tables import ApiKey
from oneflow_fakes import FakeProviders
from tests.support.identity_world import World, identity_world

CHAT = {"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}]}


@pytest.fixture
def world(database_url: str, fakes: FakeProviders) -> Iterator[World]:
    fakes.reset()
    overrides = {**fakes.settings_overrides(), "fake_providers": "off"}
    with identity_world(database_url, **overrides) as w:
        yield w


def _key(world: World, **fields: object) -> str:
    return str(_made_key(world, **fields)["key"])


def _made_key(world: World, **fields: object) -> dict[str, object]:
    body = {"name": world.unique("k"), "project_id": "acme", "role": "member", **fields}
    made = world.call("master", "POST", "/api/v1/keys", body)
    assert made.status_code == 201, made.text
    made_key: dict[str, object] = made.json()
    return made_key


def test_a_viewer_may_list_models_but_not_call_them(world: World, fakes: FakeProviders) -> None:
    assert world.call("viewer", "GET", "/v1/models").status_code == 200
    refused = world.call("viewer", "POST", "/v1/chat/completions", CHAT)
    assert refused.status_code == 403
    assert refused.json()["error"]["type"] == "permission_error"
    assert world.call("member", "POST", "/v1/chat/completions", CHAT).status_code == 200
    assert fakes.call_count() == 1


def test_a_keys_model_allow_list(world: World, fakes: FakeProviders) -> None:
    key = _key(world, allowed_models=["claude-3-haiku-20240307"])
    client = openai.OpenAI(base_url=f"{world.server.url}/v1", api_key=key, max_retries=0)
    with pytest.raises(openai.PermissionDeniedError) as caught:
        client.chat.completions.create(**CHAT)  # type: ignore[call-overload]
    assert caught.value.code == "model_not_allowed" and caught.value.param == "model"
    # Routing by strategy stays within the allow-list.
    raw = client.chat.completions.with_raw_response.create(
        model="auto", messages=[{"role": "user", "content": "hi"}]
    )
    assert raw.headers["x-oneflow-model"] == "claude-3-haiku-20240307"
    assert fakes.call_count("openai") == 0


def test_rate_limits_refuse_before_the_provider_is_called(
    world: World, fakes: FakeProviders
) -> None:
    key = _key(world, limits={"requests_per_minute": 2})
    client = openai.OpenAI(base_url=f"{world.server.url}/v1", api_key=key, max_retries=0)
    first = client.chat.completions.with_raw_response.create(**CHAT)  # type: ignore[call-overload]
    assert (first.headers["x-ratelimit-limit"], first.headers["x-ratelimit-remaining"]) == (
        "2",
        "1",
    )
    stream = client.chat.completions.with_raw_response.create(**CHAT, stream=True)  # type: ignore[call-overload]
    assert stream.headers["x-ratelimit-remaining"] == "0"
    assert list(stream.parse())
    with pytest.raises(openai.RateLimitError) as caught:
        client.chat.completions.create(**CHAT)  # type: ignore[call-overload]
    assert int(caught.value.response.headers["retry-after"]) >= 1
    claude = anthropic.Anthropic(base_url=world.server.url, api_key=key, max_retries=0)
    with pytest.raises(anthropic.RateLimitError):
        claude.messages.create(
            model="claude-3-haiku", max_tokens=5, messages=[{"role": "user", "content": "x"}]
        )
    assert fakes.call_count() == 2  # the refused calls never reached a provider


def test_the_responses_api_is_limited_like_chat(world: World, fakes: FakeProviders) -> None:
    key = _key(world, limits={"requests_per_minute": 2})
    client = openai.OpenAI(base_url=f"{world.server.url}/v1", api_key=key, max_retries=0)
    first = client.responses.with_raw_response.create(model="gpt-4o", input="hi")
    assert first.headers["x-ratelimit-remaining"] == "1"
    client.chat.completions.create(**CHAT)  # type: ignore[call-overload]
    with pytest.raises(openai.RateLimitError):
        client.responses.create(model="claude-3-haiku", input="hi")
    assert fakes.call_count() == 2
    # ... and by the key's model allow-list, before any provider is called.
    allowed = _key(world, allowed_models=["gpt-4o"])
    client = openai.OpenAI(base_url=f"{world.server.url}/v1", api_key=allowed, max_retries=0)
    with pytest.raises(openai.PermissionDeniedError):
        client.responses.create(model="claude-3-haiku", input="hi")
    assert fakes.call_count() == 2


def test_token_limits_count_the_prompt(world: World, fakes: FakeProviders) -> None:
    key = _key(world, limits={"tokens_per_minute": 50})
    headers = {"Authorization": f"Bearer {key}"}
    long_prompt = {"model": "gpt-4o", "messages": [{"role": "user", "content": "word " * 200}]}
    refused = world.client.post("/v1/chat/completions", json=long_prompt, headers=headers)
    assert refused.status_code == 429, refused.text
    assert fakes.call_count() == 0


HAIKU = "claude-3-haiku-20240307"
HI = [{"role": "user", "content": "hi"}]


def _allows_gpt_4o_and_haiku_only(world: World, key: str) -> None:
    """The key may call gpt-4o and Claude 3 Haiku under any of their names, nothing else, and
    every strategy chooses among those two (the cheapest: Haiku)."""
    client = openai.OpenAI(base_url=f"{world.server.url}/v1", api_key=key, max_retries=0)
    for model, answered_by in (("claude-3-haiku", HAIKU), (HAIKU, HAIKU), ("gpt-4o", "gpt-4o")):
        # The vendors' own fields stay accepted on their dialect's endpoints.
        raw = client.chat.completions.with_raw_response.create(
            model=model, messages=HI, user="ana", seed=7
        )
        assert raw.headers["x-oneflow-model"] == answered_by
    with pytest.raises(openai.PermissionDeniedError):
        client.chat.completions.create(model="gpt-4", messages=HI)
    cheapest = client.chat.completions.with_raw_response.create(model="cost_optimized", messages=HI)
    assert cheapest.headers["x-oneflow-model"] == HAIKU
    headers = {"Authorization": f"Bearer {key}"}
    body = {"prompt": "hi", "strategy": "cost_optimized"}
    answer = world.client.post("/api/v1/request", json=body, headers=headers)
    assert answer.status_code == 200 and answer.json()["model"] == HAIKU, answer.text
    routing = world.client.post("/api/v1/estimate", json=body, headers=headers).json()["routing"]
    assert routing["primary_model"] == HAIKU and routing["fallback_chain"] == ["gpt-4o"]


def test_an_allow_list_of_aliases_is_stored_as_catalog_ids(world: World) -> None:
    made = _made_key(world, allowed_models=["gpt-4o", "claude-3-haiku", "gpt-4o-2024-08-06"])
    assert made["allowed_models"] == [HAIKU, "gpt-4o"]
    _allows_gpt_4o_and_haiku_only(world, str(made["key"]))
    shown = world.call("master", "GET", f"/api/v1/keys/{made['id']}").json()
    assert shown["allowed_models"] == [HAIKU, "gpt-4o"]


def test_a_list_stored_with_aliases_before_still_works(world: World, database_url: str) -> None:
    made = _made_key(world, allowed_models=["gpt-4o"])

    async def store_aliases() -> None:  # as keys were stored before aliases were resolved
        engine = create_engine(database_url, pool_size=1)
        try:
            async with engine.begin() as conn:
                await conn.execute(
                    update(ApiKey)
                    .where(ApiKey.id == made["id"])
                    .values(allowed_models=["gpt-4o", "claude-3-haiku"])
                )
        finally:
            await engine.dispose()

    asyncio.run(store_aliases())
    _allows_gpt_4o_and_haiku_only(world, str(made["key"]))


@pytest.mark.parametrize(
    ("models", "unknown", "closest"),
    [(["gpt-4o-maxi"], "gpt-4o-maxi", "gpt-4o-mini"), (["gpt-4o", "gpt-99"], "gpt-99", "gpt-5")],
)
def test_an_unknown_model_is_refused(
    world: World, models: list[str], unknown: str, closest: str
) -> None:
    before = world.call("master", "GET", "/api/v1/keys").json()["data"]
    body = {"name": "b", "project_id": "acme", "allowed_models": models}
    refused = world.call("master", "POST", "/api/v1/keys", body)
    assert refused.status_code == 400, refused.text
    error = refused.json()["error"]
    assert (error["type"], error["param"]) == ("invalid_request_error", "allowed_models")
    assert f"Unknown model '{unknown}'" in error["message"]
    assert f"closest catalog ids: {closest}" in error["message"]
    assert world.call("master", "GET", "/api/v1/keys").json()["data"] == before
