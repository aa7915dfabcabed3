"""Every identity endpoint, called by every kind of caller: who may, and who may not.

Callers: no credential; API keys of acme with each role (viewer, member, admin); an admin key
of another project (outsider); a signed-in member of acme (user, a JWT); a signed-in admin of
the admin project (system); the master key. Resources of other projects answer 404 (they do
not exist for the caller); missing permissions answer 403; missing credentials 401.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.support.identity_world import PASSWORD, World, identity_world

CALLERS = ("anonymous", "viewer", "member", "admin", "outsider", "user", "system", "master")


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    path: Path = tmp_path_factory.mktemp("permissions") / "oneflow.db"
    with identity_world(
        f"sqlite+aiosqlite:///{path}", rate_limit_per_minute=100_000, rate_limit_per_hour=100_000
    ) as running:
        yield running


@dataclass(frozen=True)
class Case:
    name: str
    method: str
    path: str  # {key} / {user}: a fresh key / user of acme made for the call
    expected: tuple[int, ...]  # one status per caller, in CALLERS order
    body: Callable[[World], object] | None = None


def _key_body(world: World) -> object:
    return {"name": world.unique("k"), "project_id": "acme"}


def _user_body(world: World) -> object:
    return {
        "email": f"{world.unique('new')}@example.com",
        "password": PASSWORD,
        "project_id": "acme",
    }


CASES = [
    # statuses for: anonymous, viewer, member, admin, outsider, user, system, master
    Case("whoami", "GET", "/api/v1/whoami", (401, 200, 200, 200, 200, 200, 200, 200)),
    Case(
        "keys.create", "POST", "/api/v1/keys", (401, 403, 201, 201, 403, 201, 201, 201), _key_body
    ),
    Case(
        "keys.list", "GET", "/api/v1/keys?project_id=acme", (401, 200, 200, 200, 403, 200, 200, 200)
    ),
    Case("keys.get", "GET", "/api/v1/keys/{key}", (401, 200, 200, 200, 404, 200, 200, 200)),
    Case(
        "keys.update",
        "PATCH",
        "/api/v1/keys/{key}",
        (401, 403, 200, 200, 404, 200, 200, 200),
        lambda w: {"name": w.unique("renamed")},
    ),
    Case(
        "keys.rotate", "POST", "/api/v1/keys/{key}/rotate", (401, 403, 201, 201, 404, 201, 201, 201)
    ),
    Case(
        "keys.revoke", "POST", "/api/v1/keys/{key}/revoke", (401, 403, 200, 200, 404, 200, 200, 200)
    ),
    Case(
        "users.create",
        "POST",
        "/api/v1/users",
        (401, 403, 403, 201, 403, 403, 201, 201),
        _user_body,
    ),
    Case(
        "users.list",
        "GET",
        "/api/v1/users?project_id=acme",
        (401, 403, 403, 200, 403, 403, 200, 200),
    ),
    Case("users.get", "GET", "/api/v1/users/{user}", (401, 404, 404, 200, 404, 404, 200, 200)),
    Case(
        "users.update",
        "PATCH",
        "/api/v1/users/{user}",
        (401, 403, 403, 403, 403, 403, 200, 200),
        lambda w: {"active": False},
    ),
    Case(
        "projects.create",
        "POST",
        "/api/v1/projects",
        (401, 403, 403, 403, 403, 403, 201, 201),
        lambda w: {"name": w.unique("project")},
    ),
    Case("projects.list", "GET", "/api/v1/projects", (401, 200, 200, 200, 200, 200, 200, 200)),
    Case("projects.get", "GET", "/api/v1/projects/acme", (401, 200, 200, 200, 404, 200, 200, 200)),
    Case(
        "projects.update",
        "PATCH",
        "/api/v1/projects/acme",
        (401, 403, 403, 403, 403, 403, 200, 200),
        lambda w: {"limits": None},
    ),
    Case(
        "members.set",
        "PUT",
        "/api/v1/projects/acme/members/{user}",
        (401, 403, 403, 200, 403, 403, 200, 200),
        lambda w: {"role": "viewer"},
    ),
    Case(
        "members.remove",
        "DELETE",
        "/api/v1/projects/acme/members/{user}",
        (401, 403, 403, 204, 403, 403, 204, 204),
    ),
    Case(
        "admin.circuits",
        "GET",
        "/api/v1/admin/circuits",
        (401, 403, 403, 403, 403, 403, 200, 200),
    ),
    # Model calls need the gateway permission (this world serves through the fake providers).
    Case(
        "gateway.request",
        "POST",
        "/api/v1/request",
        (401, 403, 200, 200, 200, 200, 200, 200),
        lambda w: {"prompt": "hello", "max_tokens": 5},
    ),
    Case(
        "gateway.estimate",
        "POST",
        "/api/v1/estimate",
        (401, 403, 200, 200, 200, 200, 200, 200),
        lambda w: {"input_tokens": 100, "output_tokens": 10},
    ),
    # Billing: every credential reads its own project's usage; money is for system admins.
    Case("usage", "GET", "/api/v1/usage", (401, 200, 200, 200, 200, 200, 200, 200)),
    Case(
        "usage.other_project",
        "GET",
        "/api/v1/usage?project=acme",
        (401, 200, 200, 200, 403, 200, 200, 200),
    ),
    Case("usage.csv", "GET", "/api/v1/usage.csv", (401, 200, 200, 200, 200, 200, 200, 200)),
    Case(
        "credits.get",
        "GET",
        "/api/v1/projects/acme/credits",
        (401, 200, 200, 200, 403, 200, 200, 200),
    ),
    Case(
        "credits.topup",
        "POST",
        "/api/v1/projects/acme/credits",
        (401, 403, 403, 403, 403, 403, 201, 201),
        lambda w: {"credits": "1", "mode": "postpaid"},
    ),
    Case(
        "credits.mode",
        "PATCH",
        "/api/v1/projects/acme/credits",
        (401, 403, 403, 403, 403, 403, 200, 200),
        lambda w: {"mode": "postpaid"},
    ),
    Case(
        "ledger.list",
        "GET",
        "/api/v1/projects/acme/ledger",
        (401, 200, 200, 200, 403, 200, 200, 200),
    ),
    Case(
        "budgets.get",
        "GET",
        "/api/v1/projects/acme/budgets",
        (401, 200, 200, 200, 403, 200, 200, 200),
    ),
    Case(
        "budgets.put",
        "PUT",
        "/api/v1/projects/acme/budgets",
        (401, 403, 403, 200, 403, 403, 200, 200),
        lambda w: {"budgets": []},
    ),
    # The request log reads like usage; the caller's own view is everyone's.
    Case("requests", "GET", "/api/v1/requests", (401, 200, 200, 200, 200, 200, 200, 200)),
    Case(
        "requests.other_project",
        "GET",
        "/api/v1/requests?project=acme",
        (401, 200, 200, 200, 403, 200, 200, 200),
    ),
    Case("requests.get", "GET", "/api/v1/requests/none", (401, 404, 404, 404, 404, 404, 404, 404)),
    Case("self", "GET", "/api/v1/self", (401, 200, 200, 200, 200, 200, 200, 200)),
    Case(
        "request_log.get",
        "GET",
        "/api/v1/projects/acme/request-log",
        (401, 200, 200, 200, 403, 200, 200, 200),
    ),
    Case(
        "request_log.put",
        "PUT",
        "/api/v1/projects/acme/request-log",
        (401, 403, 403, 200, 403, 403, 200, 200),
        lambda w: {"store_bodies": False},
    ),
]

#: What a self-service session (an API key's of acme, any role) may call: its own data
#: (usage and requests of acme narrow themselves to its key).
SELF_SERVICE = {
    "whoami",
    "requests",
    "requests.other_project",
    "requests.get",
    "self",
    "usage",
    "usage.other_project",
    "usage.csv",
}


@pytest.mark.parametrize("caller", CALLERS)
@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_permission(world: World, case: Case, caller: str) -> None:
    path = case.path
    if "{key}" in path:
        path = path.replace("{key}", world.new_key()["id"])
    if "{user}" in path:
        path = path.replace("{user}", world.new_user()["id"])
    body = case.body(world) if case.body is not None else None
    response = world.call(caller, case.method, path, body)
    expected = case.expected[CALLERS.index(caller)]
    assert response.status_code == expected, response.text
    if expected >= 400:  # refusals in the OpenAI error shape
        error = response.json()["error"]
        assert set(error) == {"message", "type", "param", "code"}
        assert error["type"] == {401: "invalid_request_error", 403: "permission_error"}.get(
            expected, "invalid_request_error"
        )


def test_every_identity_route_is_in_the_table(world: World) -> None:
    routes = {
        (method.upper(), path)
        for path, operations in world.app.openapi()["paths"].items()
        if path.startswith("/api/v1/") and not path.startswith("/api/v1/auth/")  # public: below
        for method in operations
    }
    covered = {
        (
            case.method,
            case.path.split("?")[0]
            .replace("{key}", "{key_id}")
            .replace("{user}", "{user_id}")
            .replace("/projects/acme", "/projects/{project_id}")
            .replace("/requests/none", "/requests/{request_id}"),
        )
        for case in CASES
    }
    assert routes == covered


@pytest.mark.parametrize("role", ["viewer", "member", "admin"])
def test_a_self_service_session_is_refused_all_but_its_own_data(world: World, role: str) -> None:
    made = world.client.post("/api/v1/auth/key-session", headers=world.as_(role))
    assert made.status_code == 200, made.text
    session = {"Authorization": f"Bearer {made.json()['access_token']}"}
    for case in CASES:
        path = case.path
        if "{key}" in path:
            path = path.replace("{key}", world.new_key()["id"])
        if "{user}" in path:
            path = path.replace("{user}", world.new_user()["id"])
        body = case.body(world) if case.body is not None else None
        response = world.client.request(case.method, path, json=body, headers=session)
        viewer = case.expected[CALLERS.index("viewer")]
        if case.name in SELF_SERVICE:
            assert response.status_code == viewer, (case.name, response.text)
        else:  # refused; what a viewer may not even see stays unseen (404)
            assert response.status_code == (404 if viewer == 404 else 403), (
                case.name,
                response.text,
            )


def test_users_see_themselves(world: World) -> None:
    me = world.call("user", "GET", "/api/v1/whoami").json()
    assert world.call("user", "GET", f"/api/v1/users/{me['user_id']}").status_code == 200


def test_the_public_sign_in_endpoints(world: World) -> None:
    user = world.new_user()
    bad = world.client.post(
        "/api/v1/auth/token", json={"email": user["email"], "password": "wrong!!!"}
    )
    assert bad.status_code == 401
    assert bad.json()["error"]["message"] == "Invalid email or password"
    pair = world.sign_in(user["email"])
    assert (
        world.client.post("/api/v1/auth/refresh", json={"refresh_token": "x.y.z"}).status_code
        == 401
    )
    refreshed = world.client.post(
        "/api/v1/auth/refresh", json={"refresh_token": pair["refresh_token"]}
    )
    assert refreshed.status_code == 200
    assert (
        world.client.post("/api/v1/auth/logout", json={"refresh_token": "nope"}).status_code == 401
    )
    out = world.client.post(
        "/api/v1/auth/logout", json={"refresh_token": refreshed.json()["refresh_token"]}
    )
    assert out.status_code == 204
