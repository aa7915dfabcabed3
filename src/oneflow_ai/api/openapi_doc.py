"""What the OpenAPI document says beyond what the routes declare, so that it matches what the
gateway answers:

- errors: every operation answers errors in its dialect's shape (`api/errors.py`) with the
  status that fits (400 for a malformed request, never FastAPI's 422): one `default` response
  of shape `Error` (OpenAI's) or `AnthropicError` (on `/v1/messages`);
- other content types: the usage report and the request log as CSV;
- links: where a created resource can be used next (its `id` in the path of the operations on
  it), so that clients and stateful testers can follow them.
"""

from __future__ import annotations

from typing import Any

from oneflow_ai.api.errors import Dialect, dialect_for_path

__all__ = ["complete_document"]

_ERROR = {
    "type": "object",
    "required": ["error"],
    "properties": {
        "error": {
            "type": "object",
            "required": ["message", "type"],
            "properties": {
                "message": {"type": "string"},
                "type": {"type": "string"},
                "param": {"type": ["string", "null"]},
                "code": {"type": ["string", "null"]},
            },
        }
    },
}
_ANTHROPIC_ERROR = {
    "type": "object",
    "required": ["type", "error"],
    "properties": {
        "type": {"const": "error"},
        "error": {
            "type": "object",
            "required": ["type", "message"],
            "properties": {"type": {"type": "string"}, "message": {"type": "string"}},
        },
    },
}
_CSV = {"text/csv": {"schema": {"type": "string"}}}
#: (path, method) -> content types besides (or, when `only`, instead of) the JSON one.
_CONTENT = {
    ("/api/v1/usage", "get"): (_CSV, False),  # ?format=csv
    ("/api/v1/usage.csv", "get"): (_CSV, True),
    ("/api/v1/requests", "get"): (_CSV, False),  # ?format=csv
}
_PROJECT = "/api/v1/projects/{project_id}"
#: (path, method, status) of an operation that creates something with an `id`
#: -> (link name, path, method) of operations that take that id as their path parameter.
_LINKS: dict[tuple[str, str, str], tuple[tuple[str, str, str], ...]] = {
    ("/api/v1/projects", "post", "201"): (
        ("GetProject", _PROJECT, "get"),
        ("UpdateProject", _PROJECT, "patch"),
        ("GetCredits", f"{_PROJECT}/credits", "get"),
        ("AddCredits", f"{_PROJECT}/credits", "post"),
        ("SetBillingMode", f"{_PROJECT}/credits", "patch"),
        ("GetLedger", f"{_PROJECT}/ledger", "get"),
        ("GetBudgets", f"{_PROJECT}/budgets", "get"),
        ("SetBudgets", f"{_PROJECT}/budgets", "put"),
    ),
    ("/api/v1/keys", "post", "201"): (
        ("GetKey", "/api/v1/keys/{key_id}", "get"),
        ("RotateKey", "/api/v1/keys/{key_id}/rotate", "post"),
        ("RevokeKey", "/api/v1/keys/{key_id}/revoke", "post"),
    ),
    ("/api/v1/users", "post", "201"): (
        ("GetUser", "/api/v1/users/{user_id}", "get"),
        ("UpdateUser", "/api/v1/users/{user_id}", "patch"),
    ),
}


def complete_document(document: dict[str, Any]) -> None:
    """Add the errors, content types and links above to `document` (in place)."""
    schemas = document.setdefault("components", {}).setdefault("schemas", {})
    schemas["Error"], schemas["AnthropicError"] = _ERROR, _ANTHROPIC_ERROR
    paths: dict[str, dict[str, Any]] = document.get("paths", {})
    for path, item in paths.items():
        for method, operation in item.items():
            _document_errors(path, operation)
            extra = _CONTENT.get((path, method))
            if extra is not None:
                content, only = extra
                ok = operation["responses"].setdefault("200", {"description": "OK"})
                ok["content"] = dict(content) if only else {**ok.get("content", {}), **content}
    for (path, method, status), targets in _LINKS.items():
        response = paths[path][method]["responses"][status]
        response["links"] = {
            name: _link(paths, target, verb) for name, target, verb in targets if target in paths
        }
    if "HTTPValidationError" not in str(paths):  # FastAPI's, for the 422s removed above
        schemas.pop("HTTPValidationError", None)
        schemas.pop("ValidationError", None)


def _document_errors(path: str, operation: dict[str, Any]) -> None:
    responses: dict[str, Any] = operation.setdefault("responses", {})
    # FastAPI documents 422 for a body or parameter it could not validate; OneFlow answers
    # 400 in the caller's dialect instead (api/errors.py).
    responses.pop("422", None)
    shape = "AnthropicError" if dialect_for_path(path) is Dialect.ANTHROPIC else "Error"
    responses.setdefault(
        "default",
        {
            "description": "An error in the caller's dialect: 400 malformed request, 401 no "
            "or bad credentials, 402 out of credits or budget, 403 not allowed, 404 unknown, "
            "409 conflict, 413 too large, 429 rate limited (with Retry-After), 5xx the "
            "gateway or the provider failed",
            "content": {"application/json": {"schema": {"$ref": f"#/components/schemas/{shape}"}}},
        },
    )


def _link(paths: dict[str, dict[str, Any]], path: str, method: str) -> dict[str, Any]:
    """A link to `method path` passing the created object's `id` as its path parameter."""
    parameter = path.rsplit("{", 1)[1].split("}", 1)[0]
    return {
        "operationId": paths[path][method]["operationId"],
        "parameters": {parameter: "$response.body#/id"},
    }
