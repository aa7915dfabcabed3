"""The API document names every gateway endpoint with its request and answer shapes."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import Any

import httpx

from oneflow_ai.api.anthropic_request import MESSAGES_COUNT_REQUEST, MESSAGES_REQUEST
from oneflow_ai.api.openai_chat_request import CHAT_COMPLETION_REQUEST
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
        ("/v1/chat/completions", "post"): ("ChatCompletionRequest", "ChatCompletionResponse"),
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


def _document(make_settings: Callable[..., Settings]) -> dict[str, Any]:
    app = create_app(make_settings(fake_providers="off"), configure_logs=False)
    with live_server(app) as server:
        document: dict[str, Any] = httpx.get(f"{server.url}/openapi.json").json()
    return document


def test_every_operation_documents_its_errors_in_its_dialect_and_never_422(
    make_settings: Callable[..., Settings],
) -> None:
    """A malformed request is a 400 in the caller's dialect (api/errors.py), never FastAPI's
    422: the document says so, for every operation."""
    document = _document(make_settings)
    for path, item in document["paths"].items():
        for method, operation in item.items():
            responses = operation["responses"]
            assert "422" not in responses, (method, path)
            schema = responses["default"]["content"]["application/json"]["schema"]
            shape = "AnthropicError" if path.startswith("/v1/messages") else "Error"
            assert schema == {"$ref": f"#/components/schemas/{shape}"}, (method, path)
    schemas = document["components"]["schemas"]
    assert schemas["Error"]["required"] == ["error"]
    assert schemas["AnthropicError"]["properties"]["type"] == {"const": "error"}
    assert "HTTPValidationError" not in schemas


def test_the_usage_report_documents_its_csv(make_settings: Callable[..., Settings]) -> None:
    paths = _document(make_settings)["paths"]
    assert set(paths["/api/v1/usage"]["get"]["responses"]["200"]["content"]) == {
        "application/json",
        "text/csv",
    }
    assert set(paths["/api/v1/usage.csv"]["get"]["responses"]["200"]["content"]) == {"text/csv"}
    assert set(paths["/api/v1/requests"]["get"]["responses"]["200"]["content"]) == {
        "application/json",
        "text/csv",
    }


def test_answers_usage_is_documented_as_the_providers_nest_it(
    make_settings: Callable[..., Settings],
) -> None:
    """OpenAI's usage has objects in it (prompt_tokens_details), Anthropic's too."""
    schemas = _document(make_settings)["components"]["schemas"]
    for model in ("ChatCompletionResponse", "MessagesResponse"):
        usage = schemas[model]["properties"]["usage"]
        assert usage["type"] == "object" and usage["additionalProperties"] is True, usage


def test_created_projects_keys_and_users_link_to_the_operations_on_them(
    make_settings: Callable[..., Settings],
) -> None:
    """Each link names a real operation and passes the created object's id as its path
    parameter (what clients and stateful testers follow)."""
    paths = _document(make_settings)["paths"]
    operations = {
        op["operationId"]: (path, method)
        for path, item in paths.items()
        for method, op in item.items()
    }
    expected = {
        "/api/v1/projects": {
            ("/api/v1/projects/{project_id}", "get"),
            ("/api/v1/projects/{project_id}", "patch"),
            ("/api/v1/projects/{project_id}/credits", "get"),
            ("/api/v1/projects/{project_id}/credits", "post"),
            ("/api/v1/projects/{project_id}/credits", "patch"),
            ("/api/v1/projects/{project_id}/ledger", "get"),
            ("/api/v1/projects/{project_id}/budgets", "get"),
            ("/api/v1/projects/{project_id}/budgets", "put"),
        },
        "/api/v1/keys": {
            ("/api/v1/keys/{key_id}", "get"),
            ("/api/v1/keys/{key_id}/rotate", "post"),
            ("/api/v1/keys/{key_id}/revoke", "post"),
        },
        "/api/v1/users": {("/api/v1/users/{user_id}", "get"), ("/api/v1/users/{user_id}", "patch")},
    }
    for create, targets in expected.items():
        links = paths[create]["post"]["responses"]["201"]["links"]
        assert {operations[link["operationId"]] for link in links.values()} == targets
        for link in links.values():
            (parameter,) = link["parameters"]
            target_path, _ = operations[link["operationId"]]
            assert f"{{{parameter}}}" in target_path
            assert link["parameters"][parameter] == "$response.body#/id"


def test_every_reference_in_the_document_resolves(make_settings: Callable[..., Settings]) -> None:
    """Each `$ref` names a component of the document (the count_tokens and embeddings bodies
    once pointed at components that were never written)."""
    document = _document(make_settings)
    schemas = document["components"]["schemas"]
    refs = set(re.findall(r'"\$ref": ?"#/components/schemas/([^"]+)"', json.dumps(document)))
    assert {"MessagesTokenCountRequest", "EmbeddingRequestBody", "ChatMessage"} <= refs
    assert refs - set(schemas) == set()


def test_the_chat_bodies_are_documented_from_the_tables_that_check_them(
    make_settings: Callable[..., Settings],
) -> None:
    schemas = _document(make_settings)["components"]["schemas"]
    for table in (CHAT_COMPLETION_REQUEST, MESSAGES_REQUEST, MESSAGES_COUNT_REQUEST):
        written: dict[str, Any] = {}
        table.schema(written)
        assert table.name is not None
        assert schemas[table.name] == written[table.name]
    assert "max_tokens" in schemas["MessagesRequest"]["required"]
    assert "max_tokens" not in schemas["MessagesTokenCountRequest"]["required"]
    temperature = schemas["ChatCompletionRequest"]["properties"]["temperature"]
    assert temperature == {"type": ["number", "null"], "minimum": 0, "maximum": 2}
