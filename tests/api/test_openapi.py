"""The API document names every gateway endpoint with its request and answer shapes."""

from __future__ import annotations

import re
from collections.abc import Callable

import httpx

from oneflow_ai.api.schemas import PUBLIC_OPERATIONS
from oneflow_ai.app import create_app
from oneflow_ai.settings import DEFAULT_MASTER_KEY, Settings
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


def test_every_operation_that_needs_a_credential_declares_how_to_send_it(
    make_settings: Callable[..., Settings],
) -> None:
    """The document's security matches the gateway's behaviour: an operation that declares the
    schemes refuses a call without a credential (401) and takes the key in either header; a
    public one does not ask for one."""
    app = create_app(make_settings(fake_providers="off", enable_metrics=True), configure_logs=False)
    with live_server(app) as server:
        document = httpx.get(f"{server.url}/openapi.json").json()
        schemes = document["components"]["securitySchemes"]
        assert schemes["bearer"] == {
            "type": "http",
            "scheme": "bearer",
            "description": schemes["bearer"]["description"],
        }
        assert (schemes["apiKey"]["type"], schemes["apiKey"]["in"]) == ("apiKey", "header")
        assert schemes["apiKey"]["name"].lower() == "x-api-key"
        secured, public = [], []
        for path, operations in document["paths"].items():
            for method, operation in operations.items():
                url = server.url + re.sub(r"\{[^}]+\}", "x", path)
                status = httpx.request(method, url, timeout=10).status_code
                if "security" in operation:
                    assert operation["security"] == [{"bearer": []}, {"apiKey": []}]
                    assert status == 401, (method, path, status)
                    secured.append((method, path))
                else:
                    assert status != 401, (method, path)
                    public.append((method, path))
        assert ("post", "/v1/chat/completions") in secured and ("get", "/v1/models") in secured
        assert ("post", "/v1/messages") in secured and ("get", "/api/v1/keys") in secured
        assert sorted(public) == sorted(PUBLIC_OPERATIONS)
        # What the Authorize button sends, for either scheme, is what the gateway takes.
        for headers in (
            {"Authorization": f"Bearer {DEFAULT_MASTER_KEY}"},
            {"x-api-key": DEFAULT_MASTER_KEY},
        ):
            assert httpx.get(f"{server.url}/v1/models", headers=headers).status_code == 200


def test_the_root_leads_to_the_interactive_docs(make_settings: Callable[..., Settings]) -> None:
    app = create_app(make_settings(fake_providers="off"), configure_logs=False)
    with live_server(app) as server:
        landing = httpx.get(f"{server.url}/")
        assert landing.status_code == 307 and landing.headers["location"] == "/docs"
        docs = httpx.get(f"{server.url}/", follow_redirects=True)
    assert docs.status_code == 200 and str(docs.url) == f"{server.url}/docs"
    assert "swagger-ui" in docs.text and "/openapi.json" in docs.text
