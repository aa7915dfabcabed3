"""Parameters of one dialect sent to a model of the other: each is translated or named in
`X-OneFlow-Ignored-Params` (and the access line), never dropped silently (docs/dialects.md).

What reached the provider is read from the fake providers' call log.
"""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from pydantic import BaseModel
from structlog.testing import capture_logs

from oneflow_ai.api.dialect_fields import ANTHROPIC_CARRIED, OPENAI_CARRIED
from oneflow_ai.providers.anthropic_json import JSON_TOOL
from tests.integration.conftest import Gateway
from tests.integration.test_chat import ASK, WEATHER_TOOL_ANTHROPIC, WEATHER_TOOL_OPENAI
from tests.support.access_lines import access_lines

GPT, CLAUDE = "gpt-4o", "claude-3-haiku-20240307"
IGNORED = "x-oneflow-ignored-params"
HI = [{"role": "user", "content": "hi"}]
CITY_SCHEMA = {
    "type": "object",
    "properties": {"name": {"type": "string"}, "population": {"type": "integer"}},
    "required": ["name", "population"],
}


def _upstream_body(gateway: Gateway, provider: str) -> dict[str, Any]:
    (call,) = gateway.fakes.calls(provider)
    assert isinstance(call.body, dict)
    return call.body


# ---- named: what the other dialect has no parameter for ----------------------------------

OPENAI_ONLY: dict[str, object] = {
    "seed": 7,
    "logprobs": True,
    "top_logprobs": 2,
    "presence_penalty": 0.5,
    "frequency_penalty": -0.5,
    "logit_bias": {"1734": -100},
    "store": True,
    "metadata": {"team": "a"},
    "service_tier": "flex",
    "reasoning_effort": "low",
    "prediction": {"type": "content", "content": "hi"},
    "response_format": {"type": "grammar", "grammar": "x"},
}
ANTHROPIC_ONLY: dict[str, object] = {
    "top_k": 5,
    "thinking": {"type": "enabled", "budget_tokens": 1024},
    "service_tier": "standard_only",
    "container": "c1",
    "mcp_servers": [{"type": "url", "url": "https://example.com", "name": "x"}],
    "cache_control": {"type": "ephemeral"},
}


@pytest.mark.parametrize(("name", "value"), OPENAI_ONLY.items())
def test_an_openai_parameter_claude_cannot_honour_is_named(
    gateway: Gateway, name: str, value: object
) -> None:
    response = gateway.post("/v1/chat/completions", {"model": CLAUDE, "messages": HI, name: value})
    assert response.status_code == 200, response.text
    assert response.headers[IGNORED] == name
    assert name not in _upstream_body(gateway, "anthropic")
    gateway.fakes.reset()
    native = gateway.post("/v1/chat/completions", {"model": GPT, "messages": HI, name: value})
    assert IGNORED not in native.headers  # its own dialect: forwarded as written
    assert _upstream_body(gateway, "openai")[name] == value


@pytest.mark.parametrize(("name", "value"), ANTHROPIC_ONLY.items())
def test_an_anthropic_parameter_gpt_cannot_honour_is_named(
    gateway: Gateway, name: str, value: object
) -> None:
    body = {"model": GPT, "max_tokens": 50, "messages": HI, name: value}
    response = gateway.post("/v1/messages", body)
    assert response.status_code == 200, response.text
    assert response.headers[IGNORED] == name
    assert name not in _upstream_body(gateway, "openai")
    gateway.fakes.reset()
    native = gateway.post("/v1/messages", {**body, "model": CLAUDE})
    assert IGNORED not in native.headers
    assert _upstream_body(gateway, "anthropic")[name] == value


def test_through_the_sdks_with_the_access_line(gateway: Gateway) -> None:
    with capture_logs() as logs:
        raw = gateway.openai().chat.completions.with_raw_response.create(
            model=CLAUDE, messages=HI, seed=3, logprobs=True, top_logprobs=1, max_tokens=30
        )
        assert raw.parse().choices[0].message.content
        streamed = gateway.anthropic().messages.with_raw_response.create(
            model=GPT, max_tokens=30, messages=HI, stream=True, extra_body={"top_k": 3}
        )
        assert [event.type for event in streamed.parse()][-1] == "message_stop"
        # (a stream's access line is written once its last bytes are sent: wait for it)
        lines = {
            path: access_lines(logs, path)[0] for path in ("/v1/chat/completions", "/v1/messages")
        }
    assert set(raw.headers[IGNORED].split(", ")) == {"seed", "logprobs", "top_logprobs"}
    assert streamed.headers[IGNORED] == "top_k"
    assert set(lines["/v1/chat/completions"]["ignored_params"]) == {
        "seed",
        "logprobs",
        "top_logprobs",
    }
    assert lines["/v1/messages"]["ignored_params"] == ["top_k"]


@pytest.mark.parametrize(
    ("path", "body"),
    [
        (
            "/v1/chat/completions",
            {"model": CLAUDE, "messages": HI, "logprobs": False, "presence_penalty": 0, "n": 1},
        ),
        (
            "/v1/messages",
            {"model": GPT, "max_tokens": 20, "messages": HI, "thinking": {"type": "disabled"}},
        ),
    ],
)
def test_a_parameter_set_to_off_asks_for_nothing(
    gateway: Gateway, path: str, body: dict[str, object]
) -> None:
    response = gateway.post(path, body)
    assert response.status_code == 200 and IGNORED not in response.headers


def test_names_are_printable_and_few(gateway: Gateway) -> None:
    body: dict[str, object] = {"model": CLAUDE, "messages": HI, "caf\u00e9\r\nx": 1}
    body.update({f"extra_{i}": i for i in range(30)})
    response = gateway.post("/v1/chat/completions", body)
    names = response.headers[IGNORED].split(", ")
    assert names[0] == "caf???x" and len(names) == 17 and names[-1] == "..."


# ---- translated: JSON answers from Claude --------------------------------------------------


def test_json_mode_on_claude_is_a_forced_tool(gateway: Gateway) -> None:
    raw = gateway.openai().chat.completions.with_raw_response.create(
        model=CLAUDE, messages=HI, response_format={"type": "json_object"}
    )
    completion = raw.parse()
    choice = completion.choices[0]
    assert isinstance(orjson.loads(choice.message.content or ""), dict)
    assert choice.finish_reason == "stop" and not choice.message.tool_calls
    assert IGNORED not in raw.headers
    sent = _upstream_body(gateway, "anthropic")
    assert sent["tool_choice"] == {"type": "tool", "name": JSON_TOOL}
    assert [(t["name"], t["input_schema"]) for t in sent["tools"]] == [
        (JSON_TOOL, {"type": "object"})
    ]


class City(BaseModel):
    name: str
    population: int


def test_a_json_schema_on_claude_parses_with_the_sdk(gateway: Gateway) -> None:
    parsed = gateway.openai().chat.completions.parse(
        model=CLAUDE, messages=[{"role": "user", "content": "a city"}], response_format=City
    )
    city = parsed.choices[0].message.parsed
    assert isinstance(city, City)
    (tool,) = _upstream_body(gateway, "anthropic")["tools"]
    assert tool["input_schema"]["required"] == ["name", "population"]
    assert "(City)" in tool["description"]


def test_a_json_schema_on_claude_streamed(gateway: Gateway) -> None:
    schema = {"name": "city", "schema": CITY_SCHEMA}
    chunks = list(
        gateway.openai().chat.completions.create(
            model=CLAUDE,
            messages=HI,
            response_format={"type": "json_schema", "json_schema": schema},  # type: ignore[typeddict-item]
            stream=True,
        )
    )
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    answer = orjson.loads(text)
    assert isinstance(answer["name"], str) and isinstance(answer["population"], int)
    finish = [
        c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason
    ]
    assert finish == ["stop"]


def test_json_mode_with_tools_of_ones_own_is_a_system_instruction(gateway: Gateway) -> None:
    gateway.openai().chat.completions.create(
        model=CLAUDE,
        messages=[{"role": "system", "content": "Be brief."}, {"role": "user", "content": "hi"}],
        tools=[WEATHER_TOOL_OPENAI],  # type: ignore[list-item]
        response_format={
            "type": "json_schema",
            "json_schema": {"name": "c", "schema": CITY_SCHEMA},
        },  # type: ignore[typeddict-item]
    )
    sent = _upstream_body(gateway, "anthropic")
    assert [t["name"] for t in sent["tools"]] == ["get_weather"]
    assert sent["system"].startswith("Be brief.\n\nAnswer with a single JSON object only")
    assert sent["system"].endswith(orjson.dumps(CITY_SCHEMA).decode())


def test_a_malformed_response_format_is_a_400(gateway: Gateway) -> None:
    response = gateway.post(
        "/v1/chat/completions",
        {"model": CLAUDE, "messages": HI, "response_format": {"type": "json_schema"}},
    )
    assert response.status_code == 400
    assert response.json()["error"]["param"] == "response_format.json_schema"


# ---- translated: every carried field reaches the other dialect -----------------------------

# OpenAI field -> (value, what the Claude request must then hold)
OPENAI_TO_CLAUDE: dict[str, tuple[object, dict[str, object]]] = {
    "max_tokens": (33, {"max_tokens": 33}),
    "max_completion_tokens": (44, {"max_tokens": 44}),
    "temperature": (0.3, {"temperature": 0.3}),
    "top_p": (0.9, {"top_p": 0.9}),
    "stop": (["END"], {"stop_sequences": ["END"]}),
    "user": ("u-1", {"metadata": {"user_id": "u-1"}}),
    "tools": ([WEATHER_TOOL_OPENAI], {"tools": [WEATHER_TOOL_ANTHROPIC]}),
    "tool_choice": ("required", {"tool_choice": {"type": "any"}}),
    "parallel_tool_calls": (
        False,
        {"tool_choice": {"type": "auto", "disable_parallel_tool_use": True}},
    ),
    "response_format": (
        {"type": "json_object"},
        {"tool_choice": {"type": "tool", "name": JSON_TOOL}},
    ),
}
# Anthropic field -> (value, what the GPT request must then hold)
ANTHROPIC_TO_GPT: dict[str, tuple[object, dict[str, object]]] = {
    "max_tokens": (33, {"max_tokens": 33}),
    "system": ("Be brief.", {"messages": [{"role": "system", "content": "Be brief."}, *HI]}),
    "temperature": (0.3, {"temperature": 0.3}),
    "top_p": (0.9, {"top_p": 0.9}),
    "stop_sequences": (["END"], {"stop": ["END"]}),
    "metadata": ({"user_id": "u-1"}, {"user": "u-1"}),
    "tools": ([WEATHER_TOOL_ANTHROPIC], {"tools": [WEATHER_TOOL_OPENAI]}),
    "tool_choice": ({"type": "any"}, {"tool_choice": "required"}),
    "output_config": (
        {"format": {"type": "json_schema", "schema": CITY_SCHEMA}},
        {
            "response_format": {
                "type": "json_schema",
                "json_schema": {"name": "answer", "schema": CITY_SCHEMA},
            }
        },
    ),
}
# Carried by every request (the model, the conversation, streaming).
STRUCTURAL = {"model", "messages", "n", "stream", "stream_options"}
# Carried to the models that reason only (named for the others, as above):
# tests/integration/test_current_models.py checks their mapping.
REASONING = {"reasoning_effort", "thinking"}


def test_the_tables_cover_every_carried_field() -> None:
    assert set(OPENAI_TO_CLAUDE) | STRUCTURAL | (REASONING & OPENAI_CARRIED) == OPENAI_CARRIED
    assert (
        set(ANTHROPIC_TO_GPT) | (STRUCTURAL & ANTHROPIC_CARRIED) | (REASONING & ANTHROPIC_CARRIED)
        == ANTHROPIC_CARRIED
    )


def _with_tools_when_needed(field: str, body: dict[str, object], tools: object) -> None:
    if field in ("tool_choice", "parallel_tool_calls"):
        body["tools"] = [tools]


@pytest.mark.parametrize("field", OPENAI_TO_CLAUDE)
def test_an_openai_field_reaches_claude(gateway: Gateway, field: str) -> None:
    value, expected = OPENAI_TO_CLAUDE[field]
    body: dict[str, object] = {"model": CLAUDE, "messages": HI, field: value}
    _with_tools_when_needed(field, body, WEATHER_TOOL_OPENAI)
    response = gateway.post("/v1/chat/completions", body)
    assert response.status_code == 200, response.text
    assert IGNORED not in response.headers
    sent = _upstream_body(gateway, "anthropic")
    assert {key: sent.get(key) for key in expected} == expected


@pytest.mark.parametrize("field", ANTHROPIC_TO_GPT)
def test_an_anthropic_field_reaches_gpt(gateway: Gateway, field: str) -> None:
    value, expected = ANTHROPIC_TO_GPT[field]
    body: dict[str, object] = {"model": GPT, "max_tokens": 50, "messages": HI, field: value}
    _with_tools_when_needed(field, body, WEATHER_TOOL_ANTHROPIC)
    response = gateway.post("/v1/messages", body)
    assert response.status_code == 200, response.text
    assert IGNORED not in response.headers
    sent = _upstream_body(gateway, "openai")
    assert {key: sent.get(key) for key in expected} == expected


def test_output_config_beyond_its_format_is_named(gateway: Gateway) -> None:
    raw = gateway.anthropic().messages.with_raw_response.create(
        model=GPT,
        max_tokens=50,
        messages=HI,
        output_config={"effort": "low", "format": {"type": "json_schema", "schema": CITY_SCHEMA}},
    )
    assert raw.headers[IGNORED] == "output_config.effort"
    assert raw.parse().content[0].type == "text"
    assert _upstream_body(gateway, "openai")["response_format"]["type"] == "json_schema"


def test_one_tool_call_at_a_time_reaches_gpt(gateway: Gateway) -> None:
    gateway.anthropic().messages.create(
        model=GPT,
        max_tokens=50,
        messages=[{"role": "user", "content": ASK}],
        tools=[WEATHER_TOOL_ANTHROPIC],  # type: ignore[list-item]
        tool_choice={"type": "auto", "disable_parallel_tool_use": True},
    )
    sent = _upstream_body(gateway, "openai")
    assert sent["parallel_tool_calls"] is False and sent["tool_choice"] == "auto"
