"""The request bodies' tables: a wrong field is a 400 naming its path in the caller's dialect,
with the message the endpoints have always given; a right body reads as before."""

from __future__ import annotations

from typing import Any

import pytest

from oneflow_ai.api.anthropic_request import parse_messages_request
from oneflow_ai.api.body_schema import Arr, Field, Int, Obj, Str
from oneflow_ai.api.openai_chat_request import parse_chat_request
from oneflow_ai.api.openai_embeddings import EMBEDDING_REQUEST, parse_embedding_request
from oneflow_ai.errors import BadRequestError

USER = [{"role": "user", "content": "Hi"}]


def _refusal(parse: Any, body: dict[str, Any]) -> tuple[str | None, str]:
    with pytest.raises(BadRequestError) as caught:
        parse(body)
    return caught.value.param, caught.value.message


@pytest.mark.parametrize(
    ("body", "param", "says"),
    [
        ({"messages": USER}, "model", "field required"),
        ({"model": 5, "messages": USER}, "model", "must be a string, not a number"),
        ({"model": "m", "messages": USER, "max_tokens": 2.5}, "max_tokens", "an integer"),
        ({"model": "m", "messages": USER, "top_p": 2}, "top_p", "must be at most 1"),
        ({"model": "m", "messages": USER, "stop": ["a"] * 5}, "stop", "at most 4 items"),
        (
            {"model": "m", "messages": [{"role": "user", "content": [{"type": "audio"}]}]},
            "messages[0].content[0].type",
            "content parts of type 'audio' are not supported",
        ),
        (
            {"model": "m", "messages": [{"role": "user", "content": [{"type": "text"}]}]},
            "messages[0].content[0].text",
            "field required",
        ),
        (
            {"model": "m", "messages": USER, "response_format": {"type": "json_schema"}},
            "response_format.json_schema",
            "field required",
        ),
        ({"model": "m", "messages": USER, "reasoning_effort": "max"}, "reasoning_effort", "one"),
    ],
)
def test_a_chat_completion_body_names_the_wrong_field(
    body: dict[str, Any], param: str, says: str
) -> None:
    where, message = _refusal(parse_chat_request, body)
    assert where == param
    assert message.startswith(f"Invalid request: '{param}': ") and says in message


@pytest.mark.parametrize(
    ("body", "param", "says"),
    [
        ({"model": "m", "messages": USER}, "max_tokens", "field required"),
        (
            {"model": "m", "max_tokens": 5, "messages": USER, "system": [{"type": "image"}]},
            "system[0].type",
            "must be one of text",
        ),
        (
            {
                "model": "m",
                "max_tokens": 5,
                "messages": [{"role": "user", "content": [{"type": "tool_use", "id": "t"}]}],
            },
            "messages[0].content[0].name",
            "field required",
        ),
        (
            {
                "model": "m",
                "max_tokens": 5,
                "messages": [{"role": "user", "content": [{"type": "document"}]}],
            },
            "messages[0].content[0].type",
            "'document' blocks are not supported in user turns",
        ),
        (
            {
                "model": "m",
                "max_tokens": 5,
                "messages": USER,
                "tools": [{"type": "web_search_20250305", "name": "web_search"}],
            },
            "tools[0].type",
            "server tools ('web_search_20250305') are not supported",
        ),
        (
            {"model": "m", "max_tokens": 5, "messages": USER, "thinking": {"type": "enabled"}},
            "thinking.budget_tokens",
            "field required",
        ),
        (
            {"model": "m", "max_tokens": 5, "messages": USER, "tool_choice": {"type": "tool"}},
            "tool_choice.name",
            "field required",
        ),
    ],
)
def test_a_messages_body_names_the_wrong_field(body: dict[str, Any], param: str, says: str) -> None:
    where, message = _refusal(parse_messages_request, body)
    assert where == param
    assert message.startswith(f"Invalid request: '{param}': ") and says in message


def test_count_tokens_bodies_need_no_max_tokens() -> None:
    request = parse_messages_request({"model": "m", "messages": USER}, counting=True)
    assert request.max_tokens is None and request.messages[0].text == "Hi"


def test_a_closed_table_refuses_an_unknown_field_and_documents_that_it_does() -> None:
    table = Obj(
        (Field("n", Int(minimum=1), required=True), Field("tags", Arr(Str()))),
        name="Closed",
        closed=True,
    )
    table.read({"n": 2, "tags": ["a"]})
    with pytest.raises(BadRequestError) as caught:
        table.read({"n": 2, "tagz": []})
    assert caught.value.param == "tagz"
    assert caught.value.message.endswith("unknown field; known: n, tags")
    with pytest.raises(BadRequestError) as caught:
        table.read({"n": 2, "tags": ["a", 3]})
    assert caught.value.param == "tags[1]"
    components: dict[str, Any] = {}
    assert table.schema(components) == {"$ref": "#/components/schemas/Closed"}
    assert components["Closed"]["additionalProperties"] is False
    assert components["Closed"]["properties"]["tags"]["type"] == ["array", "null"]


def test_an_embeddings_body_is_checked_and_documented_by_one_table() -> None:
    assert parse_embedding_request({"model": "m", "input": ["a"], "dimensions": 256.0}).dimensions
    for body, param in [
        ({"model": "m", "input": "x", "colour": "red"}, "colour"),
        ({"input": "x"}, "model"),
        ({"model": "m", "input": "x", "encoding_format": "int8"}, "encoding_format"),
        ({"model": "m", "input": ["ok", ""]}, "input[1]"),
    ]:
        assert _refusal(parse_embedding_request, body)[0] == param
    components: dict[str, Any] = {}
    EMBEDDING_REQUEST.schema(components)
    documented = components["EmbeddingRequestBody"]
    assert documented["required"] == ["model", "input"]
    assert documented["additionalProperties"] is False
    assert len(documented["properties"]["input"]["anyOf"]) == 4
