"""`PATCH /api/v1/keys/{id}`: a key's name, expiry, allowed models and limits changed after
creation, under the rules of creation, taking effect at once; bad input is a 400 naming the
field."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest

from tests.support.identity_world import World, identity_world


@pytest.fixture
def world(database_url: str) -> Iterator[World]:
    with identity_world(database_url) as w:
        yield w


def _patch(world: World, key_id: str, body: object, who: str = "master") -> dict[str, object]:
    response = world.call(who, "PATCH", f"/api/v1/keys/{key_id}", body)
    assert response.status_code == 200, response.text
    result: dict[str, object] = response.json()
    return result


def _refused(world: World, key_id: str, body: object, who: str = "master") -> dict[str, str]:
    response = world.call(who, "PATCH", f"/api/v1/keys/{key_id}", body)
    assert response.status_code == 400, response.text
    error: dict[str, str] = response.json()["error"]
    assert error["type"] == "invalid_request_error"
    return error


def _limited(world: World, secret: str) -> list[int]:
    headers = {"Authorization": f"Bearer {secret}"}
    return [world.client.get("/api/v1/whoami", headers=headers).status_code for _ in range(3)]


def test_limits_merge_field_by_field_and_apply_at_once(world: World) -> None:
    key = world.new_key()
    warm = world.client.get("/api/v1/whoami", headers={"Authorization": f"Bearer {key['key']}"})
    assert warm.status_code == 200 and "x-ratelimit-limit" in warm.headers  # cached
    edited = _patch(world, key["id"], {"limits": {"requests_per_minute": 3}})
    assert edited["limits"] == {"requests_per_minute": 3}
    # The cached key is invalidated: this minute's calls count against the new limit.
    assert _limited(world, key["key"]) == [200, 200, 429]
    both = _patch(world, key["id"], {"limits": {"tokens_per_minute": 5000}})
    assert both["limits"] == {"requests_per_minute": 3, "tokens_per_minute": 5000}
    one = _patch(world, key["id"], {"limits": {"requests_per_minute": None}})
    assert one["limits"] == {"tokens_per_minute": 5000}
    assert _patch(world, key["id"], {"name": "renamed"})["limits"] == {"tokens_per_minute": 5000}
    assert _patch(world, key["id"], {"limits": None})["limits"] is None
    stored = world.call("master", "GET", f"/api/v1/keys/{key['id']}").json()
    assert (stored["name"], stored["limits"]) == ("renamed", None)


def test_allowed_models_are_resolved_and_apply_at_once(world: World) -> None:
    key = world.new_key()
    headers = {"Authorization": f"Bearer {key['key']}"}

    def seen() -> object:  # what the gateway's (cached) credential allows
        return world.client.get("/api/v1/whoami", headers=headers).json()["allowed_models"]

    assert seen() is None
    edited = _patch(world, key["id"], {"allowed_models": ["claude-3-haiku", "gpt-3.5-turbo"]})
    assert edited["allowed_models"] == ["claude-3-haiku-20240307", "gpt-3.5-turbo"]
    assert seen() == ["claude-3-haiku-20240307", "gpt-3.5-turbo"]
    assert _patch(world, key["id"], {"allowed_models": None})["allowed_models"] is None
    assert seen() is None


def test_expiry_is_set_moved_and_removed(world: World) -> None:
    key = world.new_key()
    soon = _patch(world, key["id"], {"expires_in_days": 2})
    expires = datetime.fromisoformat(str(soon["expires_at"]))
    assert (
        timedelta(days=2) - timedelta(minutes=1) < expires - datetime.now(UTC) <= timedelta(days=2)
    )
    later = (datetime.now(UTC) + timedelta(days=30)).replace(microsecond=0)
    moved = _patch(world, key["id"], {"expires_at": later.isoformat()})
    assert datetime.fromisoformat(str(moved["expires_at"])) == later
    assert _patch(world, key["id"], {"expires_at": None})["expires_at"] is None
    assert world.call("master", "GET", f"/api/v1/keys/{key['id']}").json()["expires_at"] is None


def test_bad_input_is_a_400_naming_the_field(world: World) -> None:
    key = world.new_key()
    unknown = _refused(world, key["id"], {"nmae": "x"})
    assert unknown["param"] == "nmae" and "known:" in unknown["message"]
    unknown_limit = _refused(world, key["id"], {"limits": {"requests_per_day": 5}})
    assert unknown_limit["param"] == "limits.requests_per_day"
    model = _refused(world, key["id"], {"allowed_models": ["gpt-4o", "no-such-model"]})
    assert model["param"] == "allowed_models" and model["code"] == "model_not_found"
    assert "no-such-model" in model["message"]
    assert _refused(world, key["id"], {"allowed_models": []})["param"] == "allowed_models"
    for value in (-1, 0):
        negative = _refused(world, key["id"], {"limits": {"requests_per_minute": value}})
        assert negative["param"] == "limits.requests_per_minute"
    past = (datetime.now(UTC) - timedelta(days=1)).isoformat()
    assert _refused(world, key["id"], {"expires_at": past})["param"] == "expires_at"
    both = {"expires_at": None, "expires_in_days": 3}
    assert _refused(world, key["id"], both)["param"] == "expires_at"
    naive = _refused(world, key["id"], {"expires_at": "2099-01-01T00:00:00"})
    assert naive["param"] == "expires_at"
    assert _refused(world, key["id"], {"name": ""})["param"] == "name"
    # Nothing of the refused edits was applied.
    stored = world.call("master", "GET", f"/api/v1/keys/{key['id']}").json()
    assert (stored["limits"], stored["allowed_models"], stored["expires_at"]) == (None, None, None)


def test_the_rules_of_creation_apply(world: World) -> None:
    key = world.new_key()
    # Per-key limits need an admin: a member may rename, not set limits.
    assert _patch(world, key["id"], {"name": "by-member"}, who="member")["name"] == "by-member"
    member = world.call("member", "PATCH", f"/api/v1/keys/{key['id']}", {"limits": None})
    assert member.status_code == 403 and member.json()["error"]["param"] == "limits"
    # A viewer changes nothing; another project's key does not exist for an outsider.
    viewer = world.call("viewer", "PATCH", f"/api/v1/keys/{key['id']}", {"name": "x"})
    assert viewer.status_code == 403
    outsider = world.call("outsider", "PATCH", f"/api/v1/keys/{key['id']}", {"name": "x"})
    assert outsider.status_code == 404
    # A member cannot change an admin key.
    admin_key = world.new_key(role="admin")
    higher = world.call("member", "PATCH", f"/api/v1/keys/{admin_key['id']}", {"name": "x"})
    assert higher.status_code == 403 and higher.json()["error"]["code"] == "role_too_high"
    # A model-restricted credential keeps the keys it edits within its own models.
    restricted = world.call(
        "master",
        "POST",
        "/api/v1/keys",
        {"name": "r", "project_id": "acme", "role": "admin", "allowed_models": ["gpt-4o"]},
    ).json()
    world.credentials["restricted"] = restricted["key"]
    wider = world.call(
        "restricted", "PATCH", f"/api/v1/keys/{key['id']}", {"allowed_models": ["gpt-4-turbo"]}
    )
    assert wider.status_code == 403, wider.text
    assert wider.json()["error"]["code"] == "model_not_allowed"
    every = world.call("restricted", "PATCH", f"/api/v1/keys/{key['id']}", {"allowed_models": None})
    assert every.status_code == 403
    assert _patch(world, key["id"], {"allowed_models": ["gpt-4o"]}, who="restricted")[
        "allowed_models"
    ] == ["gpt-4o"]


def test_revoked_and_replaced_keys_cannot_be_edited(world: World) -> None:
    key = world.new_key()
    world.call("master", "POST", f"/api/v1/keys/{key['id']}/revoke")
    revoked = world.call("master", "PATCH", f"/api/v1/keys/{key['id']}", {"name": "x"})
    assert revoked.status_code == 409 and revoked.json()["error"]["code"] == "key_not_active"
    old = world.new_key()
    world.call("master", "POST", f"/api/v1/keys/{old['id']}/rotate", {"grace_seconds": 0})
    replaced = world.call("master", "PATCH", f"/api/v1/keys/{old['id']}", {"name": "x"})
    assert replaced.status_code == 409
    missing = world.call("master", "PATCH", "/api/v1/keys/key_nothere", {"name": "x"})
    assert missing.status_code == 404
