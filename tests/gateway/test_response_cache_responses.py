# ruff: noqa: F811 - the fixtures of test_response_cache.py, imported, are the arguments
"""The exact response cache on OpenAI's Responses API (`/v1/responses`), for an OpenAI model
(its own answer passed through) and a bridged one, plain and streamed (docs/cache.md)."""

from __future__ import annotations

import json

import pytest

from tests.gateway.test_response_cache import (  # noqa: F401 - the fixtures
    CACHED,
    _post,
    projects,
    store,
    world,
)
from tests.support.billing_world import BillingWorld

MODELS = ["gpt-4o", "claude-3-haiku-20240307"]


def _body(model: str, *, stream: bool = False, text: str = "Cache me") -> dict[str, object]:
    body: dict[str, object] = {"model": model, "input": text, "max_output_tokens": 50}
    if stream:
        body["stream"] = True
    return body


def _events(text: str) -> list[dict[str, object]]:
    return [
        json.loads(line[len("data: ") :]) for line in text.splitlines() if line.startswith("data: ")
    ]


def _final(events: list[dict[str, object]]) -> dict[str, object]:
    (done,) = [e for e in events if e["type"] == "response.completed"]
    response = done["response"]
    assert isinstance(response, dict)
    return response


def _output_text(response: dict[str, object]) -> str:
    output = response["output"]
    assert isinstance(output, list)
    return "".join(
        part["text"]
        for item in output
        if item["type"] == "message"
        for part in item["content"]
        if part["type"] == "output_text"
    )


@pytest.mark.parametrize("model", MODELS)
def test_a_repeated_response_comes_from_the_cache(
    world: BillingWorld, projects: dict[str, str], model: str
) -> None:
    key = world.key(projects[CACHED])
    first = _post(world, key, "/v1/responses", _body(model))
    second = _post(world, key, "/v1/responses", _body(model))
    assert (first.headers["x-oneflow-cache"], second.headers["x-oneflow-cache"]) == (
        "miss",
        "hit",
    )
    assert world.fakes.call_count() == 1
    assert second.json()["id"] != first.json()["id"]
    assert _output_text(second.json()) == _output_text(first.json())
    assert second.json()["usage"] == first.json()["usage"]
    # a hit is stored like any response: it can be read back and continued
    stored = world.openai(key).responses.retrieve(second.json()["id"])
    assert stored.output_text == _output_text(first.json())


@pytest.mark.parametrize("model", MODELS)
def test_a_cached_response_is_replayed_as_a_well_formed_event_stream(
    world: BillingWorld, projects: dict[str, str], model: str
) -> None:
    key = world.key(projects[CACHED])
    live = _post(world, key, "/v1/responses", _body(model, stream=True))
    replayed = _post(world, key, "/v1/responses", _body(model, stream=True))
    plain = _post(world, key, "/v1/responses", _body(model))
    assert [r.headers["x-oneflow-cache"] for r in (live, replayed, plain)] == [
        "miss",
        "hit",
        "hit",
    ]
    assert world.fakes.call_count() == 1
    events = _events(replayed.text)
    kinds = [event["type"] for event in events]
    assert kinds[:2] == ["response.created", "response.in_progress"]
    assert kinds[-1] == "response.completed"
    assert [event["sequence_number"] for event in events] == list(range(len(events)))
    live_final, replay_final = _final(_events(live.text)), _final(events)
    assert _output_text(replay_final) == _output_text(live_final)
    assert replay_final["usage"] == live_final["usage"]
    assert _output_text(plain.json()) == _output_text(live_final)
    # the official SDK reads the replay
    with world.openai(key).responses.stream(
        model=model, input="Cache me", max_output_tokens=50
    ) as stream:
        final = stream.get_final_response()
    assert final.output_text == _output_text(live_final)
    assert world.fakes.call_count() == 1


def test_a_continued_conversation_is_keyed_on_the_whole_conversation(
    world: BillingWorld, projects: dict[str, str]
) -> None:
    key = world.key(projects[CACHED])
    first = _post(world, key, "/v1/responses", _body("gpt-4o", text="Remember: pineapple"))
    follow = {**_body("gpt-4o", text="What was it?"), "previous_response_id": first.json()["id"]}
    again = _post(world, key, "/v1/responses", follow)
    retried = _post(world, key, "/v1/responses", follow)
    fresh = _post(world, key, "/v1/responses", _body("gpt-4o", text="What was it?"))
    assert [r.headers["x-oneflow-cache"] for r in (first, again, retried, fresh)] == [
        "miss",
        "miss",
        "hit",
        "miss",
    ]
    assert retried.json()["previous_response_id"] == first.json()["id"]


def test_a_response_with_reasoning_is_not_stored(
    world: BillingWorld, projects: dict[str, str]
) -> None:
    key = world.key(projects[CACHED])
    body: dict[str, object] = {
        "model": "claude-sonnet-5-5",
        "input": "Think, then answer",
        "max_output_tokens": 4000,
        "reasoning": {"effort": "medium", "summary": "auto"},
    }
    for stream in (False, True):
        answers = [_post(world, key, "/v1/responses", {**body, "stream": stream}) for _ in "ab"]
        assert [a.headers["x-oneflow-cache"] for a in answers] == ["miss", "miss"]
        assert '"type":"reasoning"' in answers[1].text.replace(" ", "")  # thought again
    assert world.fakes.call_count() == 4
