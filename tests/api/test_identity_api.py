"""The identity endpoints over HTTP, as clients use them: keys, tokens, limits, error shapes."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from typing import Annotated

import pytest
from fastapi import Depends, FastAPI

from oneflow_ai.api.deps import rate_limit
from oneflow_ai.limits import RateDecision
from tests.support.identity_world import World, identity_world


def _limited_anthropic_route(app: FastAPI) -> None:
    @app.get("/v1/messages/_test_limited")
    async def limited(decision: Annotated[RateDecision, Depends(rate_limit)]) -> dict[str, bool]:
        return {"ok": decision.allowed}


@pytest.fixture
def world(database_url: str) -> Iterator[World]:
    with identity_world(database_url, _limited_anthropic_route, login_attempts_per_minute=3) as w:
        yield w


def test_key_lifecycle(world: World) -> None:
    created = world.call("admin", "POST", "/api/v1/keys", {"name": "deploy", "project_id": "acme"})
    assert created.status_code == 201
    assert created.headers["cache-control"] == "no-store"
    key = created.json()
    secret = key["key"]
    assert secret.startswith(key["prefix"] + "-") and key["status"] == "active"
    # Shown once: listing and reading never carry the secret.
    listed = world.call("admin", "GET", "/api/v1/keys")
    one = world.call("admin", "GET", f"/api/v1/keys/{key['id']}")
    for response in (listed, one):
        assert (
            secret not in response.text
            and secret.removeprefix(key["prefix"] + "-") not in response.text
        )
    assert key["id"] in {k["id"] for k in listed.json()["data"]}
    assert "key" not in one.json()
    # Accepted in each header the official SDKs use.
    for header in (
        {"Authorization": f"Bearer {secret}"},
        {"X-API-Key": secret},
        {"x-api-key": secret},
    ):
        me = world.client.get("/api/v1/whoami", headers=header)
        assert me.status_code == 200 and me.json()["key_id"] == key["id"]
    # Rotation: both work during the grace period.
    rotated = world.call(
        "admin", "POST", f"/api/v1/keys/{key['id']}/rotate", {"grace_seconds": 3600}
    )
    assert rotated.status_code == 201
    successor = rotated.json()
    assert successor["rotated_from"] == key["id"] and successor["key"] != secret
    assert world.client.get("/api/v1/whoami", headers={"x-api-key": secret}).status_code == 200
    assert world.call("admin", "GET", f"/api/v1/keys/{key['id']}").json()["status"] == "rotating"
    # Revocation.
    revoked = world.call("admin", "POST", f"/api/v1/keys/{successor['id']}/revoke")
    assert revoked.json()["status"] == "revoked"
    refused = world.client.get("/api/v1/whoami", headers={"x-api-key": successor["key"]})
    assert refused.status_code == 401
    assert refused.json()["error"]["code"] == "key_revoked"
    assert successor["key"] not in refused.text


def test_rate_limit_headers_and_429(world: World) -> None:
    made = world.call(
        "master",
        "POST",
        "/api/v1/keys",
        {"name": "tight", "project_id": "acme", "limits": {"requests_per_minute": 2}},
    )
    headers = {"Authorization": f"Bearer {made.json()['key']}"}
    first = world.client.get("/api/v1/whoami", headers=headers)
    assert (first.headers["x-ratelimit-limit"], first.headers["x-ratelimit-remaining"]) == (
        "2",
        "1",
    )
    assert int(first.headers["x-ratelimit-reset"]) == 60
    world.client.get("/api/v1/whoami", headers=headers)
    refused = world.client.get("/api/v1/whoami", headers=headers)
    assert refused.status_code == 429
    assert refused.json() == {
        "error": {
            "message": refused.json()["error"]["message"],
            "type": "rate_limit_error",
            "param": None,
            "code": "rate_limit_exceeded",
        }
    }
    assert 1 <= int(refused.headers["retry-after"]) <= 60
    assert refused.headers["x-ratelimit-remaining"] == "0"
    # In the Anthropic dialect on Anthropic's paths, with the same headers.
    anthropic = world.client.get("/v1/messages/_test_limited", headers=headers)
    assert anthropic.status_code == 429
    assert anthropic.json()["type"] == "error"
    assert anthropic.json()["error"]["type"] == "rate_limit_error"
    assert "retry-after" in anthropic.headers and "x-ratelimit-limit" in anthropic.headers
    # The master key is exempt and carries no rate-limit headers.
    for _ in range(5):
        exempt = world.call("master", "GET", "/api/v1/whoami")
        assert exempt.status_code == 200 and "x-ratelimit-limit" not in exempt.headers


def test_tokens_over_http(world: World) -> None:
    user = world.new_user()
    pair = world.sign_in(user["email"])
    assert pair["token_type"] == "bearer" and pair["expires_in"] == 900
    me = world.client.get(
        "/api/v1/whoami", headers={"Authorization": f"Bearer {pair['access_token']}"}
    )
    assert me.json()["kind"] == "user" and me.json()["user_id"] == user["id"]
    refreshed = world.client.post(
        "/api/v1/auth/refresh", json={"refresh_token": pair["refresh_token"]}
    )
    assert refreshed.status_code == 200 and refreshed.headers["cache-control"] == "no-store"
    reused = world.client.post(
        "/api/v1/auth/refresh", json={"refresh_token": pair["refresh_token"]}
    )
    assert reused.status_code == 401 and reused.json()["error"]["code"] == "refresh_token_reused"
    newest = world.client.post(
        "/api/v1/auth/refresh", json={"refresh_token": refreshed.json()["refresh_token"]}
    )
    assert newest.status_code == 401  # the family is revoked


def test_unsigned_token_is_refused_over_http(world: World) -> None:
    def b64(data: dict[str, object]) -> str:
        return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()

    claims = {"sub": "x", "pid": "proj_admin", "role": "admin"}
    forged = f"{b64({'alg': 'none', 'typ': 'at+jwt'})}.{b64(claims)}."
    response = world.client.get("/api/v1/whoami", headers={"Authorization": f"Bearer {forged}"})
    assert response.status_code == 401
    assert response.json()["error"]["type"] == "invalid_request_error"


def test_sign_in_attempts_are_limited_per_email(world: World) -> None:
    body = {"email": "target@example.com", "password": "guess-guess"}
    statuses = [world.client.post("/api/v1/auth/token", json=body).status_code for _ in range(4)]
    assert statuses == [401, 401, 401, 429]
    other = world.client.post("/api/v1/auth/token", json={**body, "email": "else@example.com"})
    assert other.status_code == 401


def test_project_limits_over_http(world: World) -> None:
    updated = world.call(
        "master", "PATCH", "/api/v1/projects/other", {"limits": {"requests_per_minute": 1}}
    )
    assert updated.json()["limits"] == {"requests_per_minute": 1}
    first = world.call("outsider", "GET", "/api/v1/whoami")
    assert first.status_code == 200
    assert world.call("outsider", "GET", "/api/v1/whoami").status_code == 429
    cleared = world.call("master", "PATCH", "/api/v1/projects/other", {"limits": None})
    assert cleared.json()["limits"] is None
    assert world.call("outsider", "GET", "/api/v1/whoami").status_code == 200


def test_a_limits_patch_changes_only_the_limits_it_names(world: World) -> None:
    def patch(limits: object) -> object:
        response = world.call("master", "PATCH", "/api/v1/projects/other", {"limits": limits})
        assert response.status_code == 200, response.text
        return response.json()["limits"]

    both = {"requests_per_minute": 100, "tokens_per_minute": 5000}
    assert patch(both) == both
    assert patch({"requests_per_hour": 1000}) == {**both, "requests_per_hour": 1000}
    assert patch({"requests_per_minute": 50, "tokens_per_minute": None}) == {
        "requests_per_minute": 50,
        "requests_per_hour": 1000,
    }
    renamed = world.call("master", "PATCH", "/api/v1/projects/other", {"name": "Other Co"})
    assert renamed.json()["limits"] == {"requests_per_minute": 50, "requests_per_hour": 1000}
    assert patch(None) is None


def test_the_official_sdks_credentials_are_accepted(world: World) -> None:
    import anthropic
    import openai

    key = world.new_key()
    openai_client = openai.OpenAI(base_url=world.server.url, api_key=key["key"], max_retries=0)
    seen = openai_client.get("/api/v1/whoami", cast_to=object)
    assert seen["key_id"] == key["id"]  # type: ignore[index]
    anthropic_client = anthropic.Anthropic(
        base_url=world.server.url, api_key=key["key"], max_retries=0
    )
    seen = anthropic_client.get("/api/v1/whoami", cast_to=object)
    assert seen["key_id"] == key["id"]  # type: ignore[index]
    with pytest.raises(openai.AuthenticationError):
        openai.OpenAI(base_url=world.server.url, api_key="sk-of-wrong", max_retries=0).get(
            "/api/v1/whoami", cast_to=object
        )


def test_a_limit_too_large_for_json_is_refused_and_never_breaks_the_listing(world: World) -> None:
    """A limit beyond 64 bits was stored, then every answer naming it (the new key, the
    project, every listing of keys) failed with a 500: JSON has no such integer."""
    huge = 2**64
    for path, body in (
        ("/api/v1/keys", {"name": "huge", "project_id": "acme"}),
        ("/api/v1/projects", {"name": "huge", "id": "huge"}),
    ):
        made = world.call("master", "POST", path, {**body, "limits": {"requests_per_minute": huge}})
        assert made.status_code == 400, made.text
        assert made.json()["error"]["param"] == "limits.requests_per_minute"
    patched = world.call(
        "master", "PATCH", "/api/v1/projects/acme", {"limits": {"tokens_per_minute": huge}}
    )
    assert patched.status_code == 400, patched.text
    assert world.call("master", "GET", "/api/v1/keys").status_code == 200
    assert world.call("master", "GET", "/api/v1/projects").status_code == 200


def test_a_value_the_database_cannot_store_is_a_400_never_a_500(
    world: World, database_url: str
) -> None:
    """PostgreSQL refuses a NUL character in text (SQLite stores it): in a body, a path or a
    query, that is the caller's bad input (400, in the caller's dialect), not a server error."""
    postgres = database_url.startswith("postgresql")
    created = world.call(
        "master", "POST", "/api/v1/keys", {"name": "a\u0000b", "project_id": "acme"}
    )
    assert created.status_code == (400 if postgres else 201), created.text
    for path in ("/api/v1/projects/a%00b", "/api/v1/usage?project=a%00b"):
        found = world.call("master", "GET", path)
        assert found.status_code in ((400,) if postgres else (200, 404)), (path, found.text)
    if postgres:
        error = created.json()["error"]
        assert error["type"] == "invalid_request_error", error
        assert "cannot be stored" in error["message"], error
