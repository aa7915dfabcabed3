"""Who may call models, and how much: the identity layer's roles, model allow-lists and rate
limits applied to the gateway's model endpoints (through the pipeline's rate-limit hook)."""

from __future__ import annotations

from collections.abc import Iterator

import anthropic
import openai
import pytest

from oneflow_ai.providers.fakes import FakeProviders
from tests.support.identity_world import World, identity_world

CHAT = {"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}]}


@pytest.fixture
def world(database_url: str, fakes: FakeProviders) -> Iterator[World]:
    fakes.reset()
    overrides = {**fakes.settings_overrides(), "fake_providers": "off"}
    with identity_world(database_url, **overrides) as w:
        yield w


def _key(world: World, **fields: object) -> str:
    body = {"name": world.unique("k"), "project_id": "acme", "role": "member", **fields}
    made = world.call("master", "POST", "/api/v1/keys", body)
    assert made.status_code == 201, made.text
    key: str = made.json()["key"]
    return key


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


def test_token_limits_count_the_prompt(world: World, fakes: FakeProviders) -> None:
    key = _key(world, limits={"tokens_per_minute": 50})
    headers = {"Authorization": f"Bearer {key}"}
    long_prompt = {"model": "gpt-4o", "messages": [{"role": "user", "content": "word " * 200}]}
    refused = world.client.post("/v1/chat/completions", json=long_prompt, headers=headers)
    assert refused.status_code == 429, refused.text
    assert fakes.call_count() == 0
