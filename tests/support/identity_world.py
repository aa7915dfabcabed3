"""A running gateway with projects, keys and users of every role, for endpoint tests."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import httpx
from fastapi import FastAPI

from oneflow_ai.app import create_app
from oneflow_ai.settings import Settings
from oneflow_ai.storage import migrate
from oneflow_ai.storage.database import create_engine
from tests.support.server import LiveServer, live_server

MASTER_KEY = "sk-master-for-endpoint-tests-0123456789"
PASSWORD = "a long enough password"

__all__ = ["MASTER_KEY", "PASSWORD", "World", "identity_world"]


@dataclass
class World:
    app: FastAPI
    server: LiveServer
    client: httpx.Client
    credentials: dict[str, str | None] = field(default_factory=dict)
    _ids: Iterator[int] = field(default_factory=itertools.count)

    def as_(self, who: str) -> dict[str, str]:
        credential = self.credentials[who]
        return {} if credential is None else {"Authorization": f"Bearer {credential}"}

    def call(self, who: str, method: str, path: str, json: object = None) -> httpx.Response:
        return self.client.request(method, path, json=json, headers=self.as_(who))

    def unique(self, stem: str) -> str:
        return f"{stem}{next(self._ids)}"

    def new_key(self, project: str = "acme", role: str = "member") -> dict[str, str]:
        body = {"name": self.unique("k"), "project_id": project, "role": role}
        response = self.call("master", "POST", "/api/v1/keys", body)
        assert response.status_code == 201, response.text
        return response.json()

    def new_user(self, project: str = "acme", role: str = "member") -> dict[str, str]:
        body = {
            "email": f"{self.unique('user')}@example.com",
            "password": PASSWORD,
            "project_id": project,
            "role": role,
        }
        response = self.call("master", "POST", "/api/v1/users", body)
        assert response.status_code == 201, response.text
        return response.json()

    def sign_in(self, email: str, project: str | None = None) -> dict[str, str]:
        body = {"email": email, "password": PASSWORD, "project_id": project}
        response = self.client.post("/api/v1/auth/token", json=body)
        assert response.status_code == 200, response.text
        return response.json()


def _migrate(url: str) -> None:
    async def run() -> None:
        engine = create_engine(url, pool_size=1)
        try:
            await migrate.upgrade(engine)
        finally:
            await engine.dispose()

    asyncio.run(run())


@contextmanager
def identity_world(
    database_url: str, configure: Callable[[FastAPI], None] | None = None, **settings: object
) -> Iterator[World]:
    """Projects `acme` and `other`; keys `viewer`/`member`/`admin` in acme and `outsider` (admin
    of other); signed-in users `user` (member of acme) and `system` (admin of the admin project);
    `master`; and `anonymous` (no credential)."""
    _migrate(database_url)
    values: dict[str, object] = {
        "database_url": database_url,
        "oneflow_master_key": MASTER_KEY,
        "log_format": "json",
        "log_requests": False,
        **settings,
    }
    app = create_app(Settings(_env_file=None, **values), configure_logs=False)  # type: ignore[arg-type, call-arg]
    if configure is not None:
        configure(app)
    with live_server(app) as server, httpx.Client(base_url=server.url, timeout=30) as client:
        world = World(app, server, client, {"master": MASTER_KEY, "anonymous": None})
        for project in ("acme", "other"):
            made = world.call(
                "master", "POST", "/api/v1/projects", {"name": project, "id": project}
            )
            assert made.status_code == 201, made.text
        for role in ("viewer", "member", "admin"):
            world.credentials[role] = world.new_key("acme", role)["key"]
        world.credentials["outsider"] = world.new_key("other", "admin")["key"]
        member = world.new_user("acme", "member")
        world.credentials["user"] = world.sign_in(member["email"])["access_token"]
        system = world.new_user("proj_admin", "admin")
        world.credentials["system"] = world.sign_in(system["email"])["access_token"]
        yield world
