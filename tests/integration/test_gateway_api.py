"""The product's own API: `POST /api/v1/request` for text, image and audio."""

from __future__ import annotations

import base64
from datetime import UTC, datetime
from decimal import Decimal

import pytest

from oneflow_ai.billing.pricing import PricingEngine
from oneflow_ai.billing.tokenizer import TokenCounter
from oneflow_ai.catalog import packaged_catalog
from oneflow_ai.domain.usage import Usage
from tests.integration.conftest import Gateway


def test_text_by_strategy(gateway: Gateway) -> None:
    response = gateway.post(
        "/api/v1/request",
        {"prompt": "Write a haiku about AI", "strategy": "cost_optimized", "max_tokens": 60},
    )
    assert response.status_code == 200, response.text
    body = response.json()
    # The cheapest text model in the catalog: Claude 3 Haiku ($0.25 / $1.25 per MTok).
    assert (body["model"], body["provider"], body["modality"]) == (
        "claude-3-haiku-20240307",
        "anthropic",
        "text",
    )
    assert body["strategy"] == "cost_optimized" and body["output"]
    usage = Usage(
        input_tokens=body["usage"]["input_tokens"], output_tokens=body["usage"]["output_tokens"]
    )
    cost = PricingEngine().price(body["model"], usage)
    assert Decimal(body["credits"]) == cost.credits and Decimal(body["cost_usd"]) == cost.usd
    assert response.headers["x-oneflow-credits"] == body["credits"]
    (record,) = gateway.sink.wait_for(1)
    assert record.request_id == body["request_id"]


def test_a_concrete_model_instead_of_a_strategy(gateway: Gateway) -> None:
    response = gateway.post("/api/v1/request", {"prompt": "hi", "model": "gpt-4o"})
    assert response.json()["model"] == "gpt-4o" and response.json()["strategy"] is None


def test_image_and_audio(gateway: Gateway) -> None:
    image = gateway.post("/api/v1/request", {"prompt": "a red bicycle", "modality": "image"}).json()
    assert image["modality"] == "image" and image["usage"]["images"] == 1
    assert image["output"].startswith(("http", "data:image/png;base64,"))
    audio = gateway.post(
        "/api/v1/request", {"prompt": "Hello there", "modality": "audio", "voice": "nova"}
    ).json()
    assert audio["provider"] == "elevenlabs" and audio["usage"]["characters"] == 11
    head, _, data = audio["output"].partition(",")
    assert head == "data:audio/mpeg;base64" and base64.b64decode(data)
    assert gateway.fakes.calls("elevenlabs")[0].path.endswith("/EXAVITQu4vr4xnSDxMaL")  # nova


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({}, "prompt"),
        ({"prompt": 5}, "prompt"),
        ({"prompt": "x", "strategy": "fastest"}, "strategy"),
        ({"prompt": "x", "modality": "video"}, "modality"),
        ({"prompt": "x", "max_tokens": -1}, "max_tokens"),
        ({"prompt": "x", "model": "dall-e-3"}, "model"),
    ],
)
def test_malformed_requests_name_the_field(
    gateway: Gateway, body: dict[str, object], param: str
) -> None:
    response = gateway.post("/api/v1/request", body)
    assert response.status_code == 400
    assert response.json()["error"]["param"] == param


def test_estimate_ranks_models_and_recommends_the_strategys_pick(gateway: Gateway) -> None:
    response = gateway.post(
        "/api/v1/estimate",
        {"input_tokens": 1500, "output_tokens": 500, "strategy": "cost_optimized"},
    )
    assert response.status_code == 200, response.text
    body = response.json()
    by_model = {e["model"]: e for e in body["estimates"]}
    # The seed's example: GPT-4 at 1500 + 500 tokens costs $0.075, 7.5 credits.
    assert Decimal(by_model["gpt-4"]["credits"]) == Decimal("7.5")
    assert Decimal(by_model["gpt-4"]["cost_usd"]) == Decimal("0.075")
    credits = [Decimal(e["credits"]) for e in body["estimates"]]
    assert credits == sorted(credits)
    routing = body["routing"]
    # Every model is estimated; the strategy picks among those automatic routing may choose.
    assert body["estimates"][0]["model"] == "gpt-5-nano"
    assert body["estimates"][0]["auto_route"] is False
    routable = [e["model"] for e in body["estimates"] if e["auto_route"]]
    assert routing["primary_model"] == routable[0] == "claude-3-haiku-20240307"
    assert Decimal(routing["estimated_credits"]) == Decimal("0.1")
    # The router's chain spans providers, with its reason and every candidate's scores.
    assert routing["fallback_chain"][0] == "gpt-3.5-turbo"
    assert {"openai", "anthropic"} <= {s["provider"] for s in routing["scores"]}
    assert routing["reason"]
    # Every model is served here but a retired one (Claude Sonnet 4.5 since 2026-11-30).
    retired = {e.id for e in packaged_catalog().models if e.retired(datetime.now(UTC).date())}
    assert retired and all(e["available"] != (e["model"] in retired) for e in body["estimates"])


def test_estimate_counts_a_prompt_per_model(gateway: Gateway) -> None:
    body = gateway.post("/api/v1/estimate", {"prompt": "Hello world, how are you?"}).json()
    by_model = {e["model"]: e for e in body["estimates"]}
    assert by_model["gpt-4o"]["tokens_exact"] is True and by_model["gpt-4o"]["input_tokens"] > 5
    assert by_model["claude-3-opus-20240229"]["tokens_exact"] is False
    missing = gateway.post("/api/v1/estimate", {"output_tokens": 5})
    assert missing.status_code == 400 and missing.json()["error"]["param"] == "input_tokens"


def test_estimate_counts_a_conversation_with_the_chat_format(gateway: Gateway) -> None:
    messages = [
        {"role": "system", "content": "You are terse."},
        {"role": "user", "content": "Hello world, how are you?"},
    ]
    body = gateway.post("/api/v1/estimate", {"messages": messages, "max_tokens": 40}).json()
    by_model = {e["model"]: e for e in body["estimates"]}
    counter = TokenCounter()
    for model in ("gpt-4o", "gpt-4", "gpt-3.5-turbo"):
        assert by_model[model]["input_tokens"] == counter.count_messages(model, messages).tokens
        assert by_model[model]["output_tokens"] == 40  # max_tokens is output_tokens' other name
    malformed = gateway.post("/api/v1/estimate", {"messages": [{"role": "user", "content": 5}]})
    assert malformed.status_code == 400, malformed.text


def test_estimate_refuses_a_field_it_does_not_know(gateway: Gateway) -> None:
    response = gateway.post("/api/v1/estimate", {"input_tokens": 10, "output_token": 5})
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["param"] == "output_token" and "unknown field" in error["message"]


def test_estimate_prices_speech_by_characters(gateway: Gateway) -> None:
    body = gateway.post("/api/v1/estimate", {"modality": "audio", "characters": 1000}).json()
    (entry,) = [e for e in body["estimates"] if e["model"] == "eleven_multilingual_v2"]
    expected = PricingEngine().price("eleven_multilingual_v2", Usage(characters=1000))
    assert Decimal(entry["credits"]) == expected.credits == Decimal("10")  # $0.10 per 1,000


def test_estimate_for_one_model(gateway: Gateway) -> None:
    body = gateway.post(
        "/api/v1/estimate", {"model": "gpt-4", "input_tokens": 1500, "output_tokens": 500}
    ).json()
    assert [(e["model"], Decimal(e["credits"])) for e in body["estimates"]] == [
        ("gpt-4", Decimal("7.5"))
    ]
    assert body["routing"]["primary_model"] == "gpt-4"
    unknown = gateway.post("/api/v1/estimate", {"model": "gpt-9", "input_tokens": 1})
    assert unknown.status_code == 404
    wrong_kind = gateway.post("/api/v1/estimate", {"model": "dall-e-3", "input_tokens": 1})
    assert wrong_kind.status_code == 400 and wrong_kind.json()["error"]["param"] == "model"


def test_estimates_of_embeddings_and_transcriptions(gateway: Gateway) -> None:
    embedding = gateway.post(
        "/api/v1/estimate",
        {"modality": "embedding", "prompt": "hello world", "strategy": "cost_optimized"},
    )
    assert embedding.status_code == 200, embedding.text
    body = embedding.json()
    rows = {row["model"]: row for row in body["estimates"]}
    assert set(rows) == {
        "text-embedding-3-small",
        "text-embedding-3-large",
        "text-embedding-ada-002",
    }
    small = rows["text-embedding-3-small"]
    assert (small["input_tokens"], small["tokens_exact"], small["credits"]) == (2, True, "0.000004")
    assert body["routing"]["primary_model"] == "text-embedding-3-small"
    transcription = gateway.post(
        "/api/v1/estimate",
        {"modality": "transcription", "seconds": 90, "strategy": "cost_optimized"},
    ).json()
    rows = {row["model"]: row for row in transcription["estimates"]}
    assert rows["whisper-1"]["credits"] == "0.900000" and rows["whisper-1"]["audio_seconds"] == 90
    assert rows["gpt-4o-mini-transcribe"]["credits"] == "0.450000"
    assert transcription["routing"]["primary_model"] == "gpt-4o-mini-transcribe"
    missing = gateway.post("/api/v1/estimate", {"modality": "transcription"})
    assert missing.status_code == 400 and missing.json()["error"]["param"] == "seconds"
