"""Every model answer says why that model (`X-OneFlow-Route`), and `/api/v1/request` says it
with the chain: both SDKs, both dialects, streams, images, speech and a fallback."""

from __future__ import annotations

import re

import httpx
import pytest

from oneflow_ai.billing.pricing import PricingEngine
from tests.integration.conftest import KEY, Gateway

# The text models automatic routing ranks (catalog `auto_route`).
TEXT_MODELS = sum(
    1 for entry in PricingEngine().catalog if entry.modality == "text" and entry.auto_route
)
ROUTE = "x-oneflow-route"
HI = [{"role": "user", "content": "hi"}]


@pytest.mark.parametrize(
    ("model", "reason"),
    [
        ("gpt-4o", "model: gpt-4o requested"),
        ("claude-3-haiku", "model: claude-3-haiku-20240307 requested"),
        ("cost_optimized", f"cost_optimized: cheapest of {TEXT_MODELS} eligible"),
        ("auto", f"balanced: best balanced score of {TEXT_MODELS} eligible"),
    ],
)
@pytest.mark.parametrize("stream", [False, True])
def test_chat_in_the_openai_dialect(
    gateway: Gateway, model: str, reason: str, stream: bool
) -> None:
    with gateway.openai().chat.completions.with_streaming_response.create(
        model=model, messages=HI, max_tokens=20, stream=stream
    ) as response:
        assert response.headers[ROUTE] == reason
        response.read()


@pytest.mark.parametrize("stream", [False, True])
def test_chat_in_the_anthropic_dialect(gateway: Gateway, stream: bool) -> None:
    with gateway.anthropic().messages.with_streaming_response.create(
        model="latency_optimized", max_tokens=20, messages=HI, stream=stream
    ) as response:
        assert response.headers[ROUTE] == (f"latency_optimized: fastest of {TEXT_MODELS} eligible")
        response.read()


def test_images_and_speech(gateway: Gateway) -> None:
    image = gateway.openai().images.with_raw_response.generate(model="dall-e-2", prompt="a fox")
    assert image.headers[ROUTE] == "model: dall-e-2 requested"
    chosen = gateway.post("/v1/images/generations", {"prompt": "a fox", "size": "1024x1024"})
    assert re.fullmatch(r"balanced: best balanced score of \d+ eligible", chosen.headers[ROUTE])
    speech = gateway.openai().audio.speech.with_raw_response.create(
        model="eleven_multilingual_v2", input="hello", voice="alloy"
    )
    assert speech.headers[ROUTE] == "model: eleven_multilingual_v2 requested"


def test_a_fallback_says_which_model_failed_and_why(gateway: Gateway) -> None:
    first = gateway.post("/api/v1/request", {"prompt": "hi", "strategy": "cost_optimized"})
    planned = first.json()["route"]
    assert (
        planned["reason"]
        == first.headers[ROUTE]
        == (f"cost_optimized: cheapest of {TEXT_MODELS} eligible")
    )
    assert planned["chain"][0] == first.json()["model"] and len(planned["chain"]) > 1
    assert planned["fallbacks"] == 0
    assert planned["attempts"] == [
        {"model": first.json()["model"], "provider": first.json()["provider"], "error": None}
    ]
    failing = first.json()["provider"]
    gateway.fakes.add_fault(provider=failing, status=503)
    second = gateway.post("/api/v1/request", {"prompt": "hi", "strategy": "cost_optimized"})
    assert second.status_code == 200, second.text
    body = second.json()
    route = body["route"]
    assert route["chain"] == planned["chain"] and route["fallbacks"] >= 1
    failed = [a["model"] for a in route["attempts"] if a["error"] is not None]
    assert failed == route["chain"][: route["fallbacks"]]
    assert {a["provider"] for a in route["attempts"][:-1]} == {failing}
    steps = ", ".join(f"{model} failed (overloaded)" for model in failed)
    assert route["reason"] == f"fallback: {steps}, answered by {body['model']}"
    assert second.headers[ROUTE] == route["reason"]
    assert second.headers["x-oneflow-fallbacks"] == str(route["fallbacks"])
    # The same through the chat endpoint, streamed: the header is sent with the stream.
    with httpx.stream(
        "POST",
        f"{gateway.url}/v1/chat/completions",
        json={"model": "cost_optimized", "messages": HI, "stream": True},
        headers={"Authorization": f"Bearer {KEY}"},
    ) as streamed:
        assert streamed.headers[ROUTE] == route["reason"]
        streamed.read()
