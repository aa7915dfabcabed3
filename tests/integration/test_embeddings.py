"""`POST /v1/embeddings` through the gateway to the fake OpenAI, with the official SDK."""

from __future__ import annotations

import base64
import math
import struct
from decimal import Decimal

import openai
import pytest

from oneflow_fakes.openai_embeddings import fake_vector
from tests.integration.conftest import Gateway

SMALL = "text-embedding-3-small"


def test_float_vectors_in_the_inputs_order(gateway: Gateway) -> None:
    raw = gateway.openai().embeddings.with_raw_response.create(
        model=SMALL, input=["first text", "second text"], encoding_format="float"
    )
    answer = raw.parse()
    assert [item.index for item in answer.data] == [0, 1]
    first, second = (item.embedding for item in answer.data)
    assert len(first) == len(second) == 1536
    assert first != second
    expected = fake_vector(SMALL, "first text", 1536)
    assert max(abs(a - b) for a, b in zip(first, expected, strict=True)) < 1e-6  # float32
    assert math.isclose(sum(v * v for v in first), 1.0, rel_tol=1e-4)
    assert raw.headers["x-oneflow-model"] == SMALL
    (call,) = gateway.fakes.calls("openai")
    assert call.path == "/openai/v1/embeddings"
    assert isinstance(call.body, dict) and call.body["encoding_format"] == "base64"
    (record,) = gateway.sink.wait_for(1)
    tokens = answer.usage.prompt_tokens
    assert record.operation == "embedding" and record.usage.input_tokens == tokens > 0
    # $0.02 per 1M tokens = 2 micro-credits per token
    assert record.cost.micro_credits == tokens * 2
    assert Decimal(raw.headers["x-oneflow-credits"]) == Decimal(tokens * 2) / 1_000_000


def test_base64_vectors_and_shorter_dimensions(gateway: Gateway) -> None:
    client = gateway.openai()
    # The SDK asks for base64 by default and decodes it into floats itself.
    default = client.embeddings.create(
        model="text-embedding-3-large", input="hello", dimensions=256
    )
    assert len(default.data[0].embedding) == 256
    raw = client.embeddings.with_raw_response.create(
        model="text-embedding-3-large", input="hello", dimensions=256, encoding_format="base64"
    )
    body = raw.http_response.json()
    encoded = body["data"][0]["embedding"]
    assert isinstance(encoded, str)
    values = struct.unpack("<256f", base64.b64decode(encoded))
    assert list(values) == pytest.approx(
        fake_vector("text-embedding-3-large", "hello", 256), abs=1e-6
    )
    assert body["model"] == "text-embedding-3-large" and body["usage"]["total_tokens"] > 0


def test_token_arrays(gateway: Gateway) -> None:
    answer = gateway.openai().embeddings.create(
        model=SMALL, input=[[1, 2, 3], [4, 5]], encoding_format="float"
    )
    assert len(answer.data) == 2 and answer.usage.prompt_tokens == 5
    one = gateway.openai().embeddings.create(model=SMALL, input=[10, 11, 12, 13])
    assert len(one.data) == 1 and one.usage.prompt_tokens == 4


def test_ada_is_not_sent_dimensions_it_already_has(gateway: Gateway) -> None:
    answer = gateway.openai().embeddings.create(
        model="text-embedding-ada-002", input="x y z", dimensions=1536
    )
    assert len(answer.data[0].embedding) == 1536
    (call,) = gateway.fakes.calls("openai")
    assert isinstance(call.body, dict) and "dimensions" not in call.body


def test_strategy_routes_among_models_of_the_asked_length(gateway: Gateway) -> None:
    client = gateway.openai()
    raw = client.embeddings.with_raw_response.create(
        model="cost_optimized", input="cheap please", dimensions=1536
    )
    assert raw.headers["x-oneflow-model"] == SMALL  # the cheapest of the 1536-long ones
    assert len(raw.parse().data[0].embedding) == 1536
    large = client.embeddings.with_raw_response.create(
        model="quality_optimized", input="best please", dimensions=3072
    )
    assert large.headers["x-oneflow-model"] == "text-embedding-3-large"  # the only 3072 one
    with pytest.raises(openai.BadRequestError) as refused:
        client.embeddings.create(model="auto", input="which length?")
    assert refused.value.body["param"] == "dimensions"  # type: ignore[index]


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"model": SMALL}, "input"),
        ({"model": SMALL, "input": 42}, "input"),
        ({"model": SMALL, "input": []}, "input"),
        ({"model": SMALL, "input": ["ok", 3.5]}, "input[1]"),
        ({"model": SMALL, "input": ["ok", ""]}, "input[1]"),
        ({"model": SMALL, "input": "x", "dimensions": "256"}, "dimensions"),
        ({"model": SMALL, "input": "x", "dimensions": 0}, "dimensions"),
        ({"model": SMALL, "input": "x", "dimensions": 4096}, "dimensions"),
        ({"model": "text-embedding-ada-002", "input": "x", "dimensions": 512}, "dimensions"),
        ({"model": SMALL, "input": "x", "encoding_format": "int8"}, "encoding_format"),
        ({"model": SMALL, "input": "x", "colour": "red"}, "colour"),
        ({"model": "gpt-4o", "input": "x"}, "model"),
        ({"model": "whisper-1", "input": "x"}, "model"),
    ],
)
def test_bad_input_is_a_400_naming_the_field(
    gateway: Gateway, body: dict[str, object], param: str
) -> None:
    answer = gateway.post("/v1/embeddings", body)
    assert answer.status_code == 400, answer.text
    error = answer.json()["error"]
    assert error["param"] == param and error["type"] == "invalid_request_error"
    assert gateway.fakes.calls("openai") == []


def test_an_input_over_the_token_limit_is_refused_before_the_provider(gateway: Gateway) -> None:
    long_text = "token " * 9000  # about 9,000 cl100k tokens: over the 8,192 limit
    client = gateway.openai()
    with pytest.raises(openai.BadRequestError) as refused:
        client.embeddings.create(model=SMALL, input=["short", long_text])
    assert refused.value.status_code == 400
    assert refused.value.body["param"] == "input[1]"  # type: ignore[index]
    assert refused.value.body["code"] == "context_length_exceeded"  # type: ignore[index]
    with pytest.raises(openai.BadRequestError) as one:
        client.embeddings.create(model=SMALL, input=list(range(8193)))
    assert one.value.body["param"] == "input"  # type: ignore[index]
    with pytest.raises(openai.BadRequestError) as routed:
        client.embeddings.create(model="auto", input=long_text, dimensions=1536)
    assert routed.value.body["param"] == "input"  # type: ignore[index]
    assert gateway.fakes.calls("openai") == []
