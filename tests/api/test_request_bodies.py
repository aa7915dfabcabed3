"""OneFlow's own request bodies: unknown fields are refused by name, and a JSON body is read as
JSON whatever its Content-Type (the model endpoints' vendor dialects are not concerned)."""

from __future__ import annotations

import types
import typing
from collections.abc import Callable, Iterable, Iterator

import orjson
import pytest
from fastapi.routing import APIRoute
from pydantic import BaseModel

from oneflow_ai.api.bodies import Body, JsonRoute
from oneflow_ai.app import create_app
from oneflow_ai.settings import Settings
from tests.support.identity_world import World, identity_world


@pytest.fixture
def world(database_url: str) -> Iterator[World]:
    with identity_world(database_url, fake_providers="off") as w:
        yield w


NEW_KEY = {"name": "x", "project_id": "acme"}

# (who, method, path, body, the unknown field's path)
UNKNOWN_FIELDS = [
    ("master", "POST", "/api/v1/keys", {**NEW_KEY, "rpm": 5}, "rpm"),
    ("master", "POST", "/api/v1/keys", {**NEW_KEY, "limits": {"rpm": 5}}, "limits.rpm"),
    ("admin", "POST", "/api/v1/keys/key_x/rotate", {"grace": 60}, "grace"),
    ("master", "POST", "/api/v1/projects", {"name": "p", "limit": {}}, "limit"),
    ("master", "PATCH", "/api/v1/projects/acme", {"limits": {"rph": 1}}, "limits.rph"),
    ("master", "PUT", "/api/v1/projects/acme/members/u", {"role": "member", "x": 1}, "x"),
    ("master", "POST", "/api/v1/users", {"email": "a@b.co", "password": "p", "roles": []}, "roles"),
    ("master", "PATCH", "/api/v1/users/u", {"enabled": False}, "enabled"),
    ("anonymous", "POST", "/api/v1/auth/token", {"email": "a@b.co", "scope": "x"}, "scope"),
    ("anonymous", "POST", "/api/v1/auth/refresh", {"refresh_token": "t", "x": 1}, "x"),
    ("anonymous", "POST", "/api/v1/auth/logout", {"refresh_token": "t", "x": 1}, "x"),
    ("master", "POST", "/api/v1/projects/acme/credits", {"credits": "5", "memo": "x"}, "memo"),
    ("master", "PATCH", "/api/v1/projects/acme/credits", {"mode": "prepaid", "x": 1}, "x"),
    (
        "master",
        "PUT",
        "/api/v1/projects/acme/budgets",
        {"budgets": [{"metric": "credits", "period": "day", "limit": "5", "scope": "key"}]},
        "budgets[0].scope",
    ),
    ("member", "POST", "/api/v1/request", {"prompt": "hi", "temperature": 0.2}, "temperature"),
    ("member", "POST", "/api/v1/estimate", {"prompt": "hi", "rpm": 1}, "rpm"),
]


def test_an_unknown_field_is_refused_by_name(world: World) -> None:
    # One gateway for every endpoint (a world per case would cost seconds each).
    before = world.call("master", "GET", "/api/v1/keys").json()["data"]
    for who, method, path, body, field in UNKNOWN_FIELDS:
        refused = world.call(who, method, path, body)
        assert refused.status_code == 400, (path, refused.text)
        error = refused.json()["error"]
        assert (error["type"], error["param"]) == ("invalid_request_error", field), path
        assert error["message"].startswith(f"Invalid request: '{field}': unknown field; known: ")
    refused = world.call("master", "POST", "/api/v1/keys", {**NEW_KEY, "rpm": 5})
    known = refused.json()["error"]["message"].partition("known: ")[2].split(", ")
    assert "limits" in known and "allowed_models" in known and "name" in known
    assert world.call("master", "GET", "/api/v1/keys").json()["data"] == before


CONTENT_TYPES = [None, "application/x-www-form-urlencoded", "text/plain", "application/json"]
NOT_JSON_OBJECTS = [
    (b"name=x&project_id=acme", "the body is not valid JSON ("),
    (b'{"name": "x",', "the body is not valid JSON ("),
    (b'["x"]', "the body must be a JSON object"),
    (b"", "the body is empty"),
]


def test_a_json_body_is_read_whatever_its_content_type(world: World) -> None:
    """curl -d sends application/x-www-form-urlencoded; other clients send none."""
    for content_type in CONTENT_TYPES:
        headers = world.as_("master")
        if content_type is not None:
            headers["Content-Type"] = content_type
        body = orjson.dumps({"name": world.unique("k"), "project_id": "acme"})
        made = world.client.post("/api/v1/keys", content=body, headers=headers)
        assert made.status_code == 201, (content_type, made.text)
        limits = orjson.dumps({"limits": {"requests_per_minute": 7}})
        patched = world.client.patch("/api/v1/projects/other", content=limits, headers=headers)
        assert patched.status_code == 200, (content_type, patched.text)
    for content, says in NOT_JSON_OBJECTS:
        headers = {**world.as_("master"), "Content-Type": "application/x-www-form-urlencoded"}
        refused = world.client.post("/api/v1/keys", content=content, headers=headers)
        assert refused.status_code == 400, refused.text
        message = refused.json()["error"]["message"]
        assert message.startswith(f"Invalid request: {says}"), message
        assert message.endswith("send a JSON object (Content-Type: application/json)")


def _api_routes(routes: Iterable[object]) -> Iterator[APIRoute]:
    for route in routes:
        included = getattr(route, "original_router", None)  # an included router, kept apart
        if included is not None:
            yield from _api_routes(included.routes)
        elif isinstance(route, APIRoute):
            yield route


def _body_models(route: APIRoute) -> list[type[BaseModel]]:
    models = []
    for hint in typing.get_type_hints(route.endpoint).values():
        for candidate in typing.get_args(hint) if isinstance(hint, types.UnionType) else [hint]:
            if isinstance(candidate, type) and issubclass(candidate, BaseModel):
                models.append(candidate)
    return models


def test_every_oneflow_body_is_strict_and_read_as_json(
    make_settings: Callable[..., Settings],
) -> None:
    """Guards the rule for endpoints added later: OneFlow's pydantic bodies derive from `Body`
    on a `JsonRoute`; the vendor dialects' endpoints (/v1/...) parse their own bodies."""
    app = create_app(make_settings(fake_providers="off"), configure_logs=False)
    checked = 0
    for route in _api_routes(app.routes):
        for model in _body_models(route):
            assert route.path.startswith("/api/"), route.path
            assert issubclass(model, Body), (route.path, model)
            assert isinstance(route, JsonRoute), route.path
            checked += 1
    assert checked >= 13  # keys 2, projects 3, users 2, sign-in 3, credits and budgets 3
