"""The API document names every gateway endpoint with its request and answer shapes."""

from __future__ import annotations

from collections.abc import Callable

import httpx

from oneflow_ai.app import create_app
from oneflow_ai.settings import Settings
from tests.support.server import live_server


def test_openapi_documents_request_and_response_shapes(
    make_settings: Callable[..., Settings],
) -> None:
    app = create_app(make_settings(fake_providers="off"), configure_logs=False)
    with live_server(app) as server:
        document = httpx.get(f"{server.url}/openapi.json").json()
    schemas = document["components"]["schemas"]
    expected = {
        ("/v1/chat/completions", "post"): ("ChatCompletionRequest", "ChatCompletion"),
        ("/v1/messages", "post"): ("MessagesRequest", "MessagesResponse"),
        ("/v1/images/generations", "post"): ("ImageGenerationRequest", "ImagesResponse"),
        ("/v1/audio/speech", "post"): ("SpeechRequestBody", None),
        ("/api/v1/request", "post"): ("GatewayRequest", "GatewayResponse"),
        ("/v1/models", "get"): (None, "ModelList"),
    }
    for (path, method), (request, response) in expected.items():
        operation = document["paths"][path][method]
        if request is not None:
            ref = operation["requestBody"]["content"]["application/json"]["schema"]["$ref"]
            assert ref == f"#/components/schemas/{request}"
            assert request in schemas
        if response is not None:
            content = operation["responses"]["200"]["content"]["application/json"]
            assert content["schema"]["$ref"] == f"#/components/schemas/{response}"
    # Nested shapes are resolvable too.
    assert "ChatMessage" in schemas and "AnthropicMessage" in schemas
    assert schemas["ChatCompletionRequest"]["required"] == ["model", "messages"]
