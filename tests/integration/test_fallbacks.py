"""Fallback models: the catalog's per-model lists, and the caller's own (OpenRouter's `models`
body field, the `X-OneFlow-Fallbacks` header), with the key's allow-list applied to each;
the official SDKs in front of the gateway, the fake providers behind it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import anthropic
import httpx
import openai
import pytest

from oneflow_fakes import FakeProviders
from tests.support.identity_world import World, identity_world

HAIKU = "claude-3-haiku-20240307"
SONNET = "claude-3-sonnet-20240229"
CATALOG = "routing:\n  gpt-4o:\n    fallbacks: [claude-3-haiku, gpt-3.5-turbo]\n"
HI = [{"role": "user", "content": "Hi"}]


@pytest.fixture
def world(database_url: str, fakes: FakeProviders, tmp_path: Path) -> Iterator[World]:
    fakes.reset()
    catalog = tmp_path / "catalog.yaml"
    catalog.write_text(CATALOG)
    overrides = {
        **fakes.settings_overrides(),
        "fake_providers": "off",
        "catalog_path": str(catalog),
        "upstream_max_retries": 0,
        "circuit_min_calls": 1_000_000,
    }
    with identity_world(database_url, **overrides) as running:
        yield running


def _openai(world: World, key: str | None = None) -> openai.OpenAI:
    key = key or world.credentials["member"]
    return openai.OpenAI(base_url=f"{world.server.url}/v1", api_key=key, max_retries=0)


def _anthropic(world: World, key: str | None = None) -> anthropic.Anthropic:
    key = key or world.credentials["member"]
    return anthropic.Anthropic(base_url=world.server.url, api_key=key, max_retries=0)


def _key(world: World, models: list[str]) -> str:
    body = {"name": world.unique("k"), "project_id": "acme", "allowed_models": models}
    made = world.call("master", "POST", "/api/v1/keys", body)
    assert made.status_code == 201, made.text
    return str(made.json()["key"])


def test_the_catalogs_fallback_answers_when_the_model_fails(
    world: World, fakes: FakeProviders
) -> None:
    fakes.add_fault(provider="openai", model="gpt-4o", status=503)
    raw = _openai(world).chat.completions.with_raw_response.create(model="gpt-4o", messages=HI)
    assert raw.parse().choices[0].message.content
    assert raw.headers["x-oneflow-model"] == HAIKU
    assert raw.headers["x-oneflow-provider"] == "anthropic"
    assert raw.headers["x-oneflow-fallbacks"] == "1"
    assert raw.headers["x-oneflow-route"] == (
        f"fallback: gpt-4o failed (overloaded), answered by {HAIKU}"
    )
    # Streamed, through the other dialect, the same.
    with _anthropic(world).messages.stream(model="gpt-4o", max_tokens=30, messages=HI) as stream:
        assert "".join(stream.text_stream).strip()
    assert fakes.call_count("anthropic", HAIKU) == 2
    # The next in the list when the first fallback fails too.
    fakes.add_fault(provider="anthropic", status=529)
    raw = _openai(world).chat.completions.with_raw_response.create(model="gpt-4o", messages=HI)
    assert (raw.headers["x-oneflow-model"], raw.headers["x-oneflow-fallbacks"]) == (
        "gpt-3.5-turbo",
        "2",
    )


def test_a_key_never_falls_back_to_a_model_it_may_not_use(
    world: World, fakes: FakeProviders
) -> None:
    fakes.add_fault(provider="openai", model="gpt-4o", status=503)
    key = _key(world, ["gpt-4o", "gpt-3.5-turbo"])  # not claude-3-haiku
    raw = _openai(world, key).chat.completions.with_raw_response.create(model="gpt-4o", messages=HI)
    assert raw.headers["x-oneflow-model"] == "gpt-3.5-turbo"
    assert raw.headers["x-oneflow-fallbacks"] == "1"  # the haiku was never a candidate
    assert fakes.call_count("anthropic") == 0
    only = _key(world, ["gpt-4o"])
    with pytest.raises(openai.InternalServerError) as caught:
        _openai(world, only).chat.completions.create(model="gpt-4o", messages=HI)
    assert caught.value.status_code == 503
    assert fakes.call_count("anthropic") == 0 and fakes.call_count("openai", "gpt-3.5-turbo") == 1


def test_openrouter_style_models_in_the_body(world: World, fakes: FakeProviders) -> None:
    fakes.add_fault(provider="openai", model="gpt-4", status=500)
    raw = _openai(world).chat.completions.with_raw_response.create(
        model="gpt-4", messages=HI, extra_body={"models": ["claude-3-sonnet"]}
    )
    assert raw.headers["x-oneflow-model"] == SONNET
    assert raw.headers["x-oneflow-fallbacks"] == "1"
    # The list is OneFlow's: it never reaches a provider.
    (failed,) = fakes.calls("openai", "gpt-4")
    assert isinstance(failed.body, dict) and "models" not in failed.body
    # Without `model`, the first of `models` is the model (OpenRouter's way).
    answer = world.call(
        "member",
        "POST",
        "/v1/chat/completions",
        {"models": ["gpt-4", "gpt-3.5-turbo"], "messages": HI},
    )
    assert answer.status_code == 200, answer.text
    assert answer.headers["x-oneflow-model"] == "gpt-3.5-turbo"
    # In the Anthropic dialect's body too.
    message = _anthropic(world).messages.with_raw_response.create(
        model="gpt-4", max_tokens=30, messages=HI, extra_body={"models": ["claude-3-haiku"]}
    )
    assert message.headers["x-oneflow-model"] == HAIKU
    # A list replaces the catalog's: gpt-4o with an explicit list falls back only to it.
    fakes.add_fault(provider="openai", model="gpt-4o", status=503)
    raw = _openai(world).chat.completions.with_raw_response.create(
        model="gpt-4o", messages=HI, extra_body={"models": ["claude-3-sonnet"]}
    )
    assert raw.headers["x-oneflow-model"] == SONNET
    with pytest.raises(openai.InternalServerError):  # an empty list: no fallback at all
        _openai(world).chat.completions.create(
            model="gpt-4o", messages=HI, extra_body={"models": []}
        )


def test_the_fallbacks_header_in_both_dialects(world: World, fakes: FakeProviders) -> None:
    fakes.add_fault(provider="anthropic", model=HAIKU, status=529)
    message = _anthropic(world).messages.with_raw_response.create(
        model="claude-3-haiku",
        max_tokens=30,
        messages=HI,
        extra_headers={"X-OneFlow-Fallbacks": "claude-3-sonnet, gpt-3.5-turbo"},
    )
    assert message.parse().content[0].type == "text"
    assert message.headers["x-oneflow-model"] == SONNET
    assert message.headers["x-oneflow-route"].startswith("fallback: claude-3-haiku-20240307")
    fakes.add_fault(provider="anthropic", status=529)
    chunks = list(
        _openai(world).chat.completions.create(
            model="claude-3-haiku",
            messages=HI,
            stream=True,
            extra_headers={"X-OneFlow-Fallbacks": "claude-3-sonnet,gpt-3.5-turbo"},
        )
    )
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices).strip()
    assert fakes.call_count("openai", "gpt-3.5-turbo") == 1


def test_an_unknown_fallback_is_a_400_naming_it_in_the_callers_dialect(
    world: World, fakes: FakeProviders
) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        _openai(world).chat.completions.create(
            model="gpt-4o", messages=HI, extra_body={"models": ["claude-3-haiku", "gpt-9"]}
        )
    assert caught.value.param == "models" and caught.value.code == "model_not_found"
    assert "'gpt-9'" in caught.value.message
    with pytest.raises(anthropic.BadRequestError) as refused:
        _anthropic(world).messages.create(
            model="claude-3-haiku",
            max_tokens=30,
            messages=HI,
            extra_headers={"X-OneFlow-Fallbacks": "gpt-4o,claude-9"},
        )
    assert refused.value.status_code == 400
    body = refused.value.body
    assert isinstance(body, dict) and body["type"] == "error"
    assert body["error"]["type"] == "invalid_request_error"
    assert "'claude-9'" in body["error"]["message"]
    assert "X-OneFlow-Fallbacks" in body["error"]["message"]
    # Another modality, a malformed list, or both a body list and the header: 400s too.
    for extra_body, headers, names in (
        ({"models": ["dall-e-3"]}, {}, "dall-e-3"),
        ({"models": "gpt-4"}, {}, "models"),
        ({"models": ["gpt-4"]}, {"X-OneFlow-Fallbacks": "gpt-4"}, "not both"),
        ({}, {"X-OneFlow-Fallbacks": "gpt-4,,gpt-4o"}, "comma-separated"),
    ):
        with pytest.raises(openai.BadRequestError) as bad:
            _openai(world).chat.completions.create(
                model="gpt-4o", messages=HI, extra_body=extra_body, extra_headers=headers
            )
        assert names in bad.value.message
    assert fakes.call_count() == 0  # nothing reached a provider


def test_a_fallback_outside_the_keys_allow_list_is_refused(
    world: World, fakes: FakeProviders
) -> None:
    key = _key(world, ["gpt-4o", "gpt-3.5-turbo"])
    with pytest.raises(openai.PermissionDeniedError) as caught:
        _openai(world, key).chat.completions.create(
            model="gpt-4o", messages=HI, extra_headers={"X-OneFlow-Fallbacks": "claude-3-haiku"}
        )
    assert caught.value.code == "model_not_allowed"
    assert caught.value.param == "X-OneFlow-Fallbacks"
    assert HAIKU in caught.value.message
    assert fakes.call_count() == 0
    # Images take the header too, within their modality.
    fakes.add_fault(provider="openai", model="dall-e-3", status=503)
    images = httpx.post(
        f"{world.server.url}/v1/images/generations",
        json={"model": "dall-e-3", "prompt": "a cat", "size": "1024x1024"},
        headers={
            "Authorization": f"Bearer {world.credentials['member']}",
            "X-OneFlow-Fallbacks": "dall-e-2",
        },
        timeout=30,
    )
    assert images.status_code == 200, images.text
    assert images.headers["x-oneflow-model"] == "dall-e-2"
