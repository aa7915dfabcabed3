"""A running gateway in front of the fake providers, for end-to-end billing tests.

`billing_world(database_url)` starts fake providers and a gateway on a migrated database (the
caller's `database_url` fixture), with no rate limit, retries or circuits in the way, and gives
a `BillingWorld`: projects with a key of their own, top-ups and budgets through the admin API,
the official SDKs and raw HTTP clients for a key, and the ledger's invariants read from the
database.

The fakes count tokens with the gateway's own tokenizer for `MODEL` unless told otherwise, as
the real provider does: a request's worst case (its prompt and `max_tokens` of output) is then
exactly what an answer cut at `max_tokens` costs.
"""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass, field
from decimal import Decimal

import anthropic
import httpx
import openai
from fastapi import FastAPI
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from oneflow_ai.app import create_app
from oneflow_ai.billing.pricing import PricingEngine
from oneflow_ai.billing.tokenizer import TokenCounter
from oneflow_ai.catalog import load_catalog
from oneflow_ai.settings import Settings
from oneflow_ai.storage.database import create_engine
from oneflow_fakes import FakeProviders
from tests.support.ledger import Snapshot, assert_consistent
from tests.support.server import LiveServer, live_server

__all__ = [
    "CHAT_PATHS",
    "MASTER_KEY",
    "MODEL",
    "NO_CREDITS",
    "BillingWorld",
    "Charge",
    "billing_world",
    "chat_body",
    "counter",
    "error_type",
    "gateway_tokens",
    "prompt_tokens",
    "worst_case",
]

MASTER_KEY = "sk-master-for-billing-tests-0123456789"
PASSWORD = "a long enough password"
MODEL = "gpt-4o"
#: The prompt every load request sends (its token count is fixed).
PROMPT = "Say something about budgets."

_CATALOG = load_catalog(None)
counter = TokenCounter(_CATALOG)
pricing = PricingEngine(_CATALOG)


def gateway_tokens(text: str) -> int:
    """`text`'s tokens as the gateway counts them for `MODEL`."""
    return counter.count_text(MODEL, text).tokens


@dataclass(frozen=True)
class Charge:
    request_id: str
    model: str
    provider: str
    input_tokens: int | None
    output_tokens: int | None
    micro_credits: int


@dataclass
class BillingWorld:
    app: FastAPI
    server: LiveServer
    fakes: FakeProviders
    admin: httpx.Client
    database_url: str
    key_ids: dict[str, str] = field(default_factory=dict)  # key -> its id
    _ids: Iterator[int] = field(default_factory=itertools.count)

    @property
    def url(self) -> str:
        return self.server.url

    # ---- administration through the API -----------------------------------------------------

    def admin_call(
        self, method: str, path: str, json: object = None, **params: str
    ) -> httpx.Response:
        """A call with the master key that must succeed; `params` go in the query string."""
        response = self.admin.request(method, path, json=json, params=params or None)
        assert response.status_code < 300, (method, path, response.status_code, response.text)
        return response

    def project(self, stem: str = "proj") -> tuple[str, str]:
        """A new project and a member key of it: (project id, key)."""
        project_id = f"{stem}{next(self._ids)}"
        self.admin_call("POST", "/api/v1/projects", {"name": project_id, "id": project_id})
        return project_id, self.key(project_id)

    def key(self, project_id: str, role: str = "member", **fields: object) -> str:
        """A new key of the project (`fields`: more of the key's settings, e.g. `limits`)."""
        body = {"name": f"k{next(self._ids)}", "project_id": project_id, "role": role, **fields}
        made = self.admin_call("POST", "/api/v1/keys", body).json()
        self.key_ids[made["key"]] = made["id"]
        key: str = made["key"]
        return key

    def user(self, project_id: str, role: str = "member") -> tuple[str, str]:
        """A new user of the project, signed in: (user id, access token)."""
        email = f"user{next(self._ids)}@example.com"
        body = {"email": email, "password": PASSWORD, "project_id": project_id, "role": role}
        user_id: str = self.admin_call("POST", "/api/v1/users", body).json()["id"]
        signed_in = self.admin.post(
            "/api/v1/auth/token", json={"email": email, "password": PASSWORD}
        )
        assert signed_in.status_code == 200, signed_in.text
        token: str = signed_in.json()["access_token"]
        return user_id, token

    def metric(self, name: str, **labels: str) -> float:
        """A sample of the gateway's `/metrics` (0 when it has none yet)."""
        exposition = self.admin.get("/metrics").text
        for family in text_string_to_metric_families(exposition):
            for sample in family.samples:
                if sample.name == name and all(
                    sample.labels.get(k) == v for k, v in labels.items()
                ):
                    return float(sample.value)
        return 0.0

    def top_up(self, project_id: str, micro_credits: int) -> None:
        credits = Decimal(micro_credits) / 1_000_000
        self.admin_call("POST", f"/api/v1/projects/{project_id}/credits", {"credits": str(credits)})

    def budgets(self, project_id: str, *budgets: dict[str, object]) -> list[dict[str, object]]:
        body = {"budgets": list(budgets)}
        data: list[dict[str, object]] = self.admin_call(
            "PUT", f"/api/v1/projects/{project_id}/budgets", body
        ).json()["data"]
        return data

    # ---- callers ------------------------------------------------------------------------------

    def openai(self, key: str) -> openai.OpenAI:
        return openai.OpenAI(base_url=f"{self.url}/v1", api_key=key, max_retries=0)

    def anthropic(self, key: str) -> anthropic.Anthropic:
        return anthropic.Anthropic(base_url=self.url, api_key=key, max_retries=0)

    @asynccontextmanager
    async def client(self, key: str, connections: int = 100) -> AsyncIterator[httpx.AsyncClient]:
        """An async client with at most `connections` connections to the gateway, each for
        one request: on a loaded machine a kept-alive connection can meet the server's idle
        timeout as the next request goes out, a transport race that says nothing of billing."""
        limits = httpx.Limits(max_connections=connections, max_keepalive_connections=0)
        async with httpx.AsyncClient(
            base_url=self.url,
            headers={"Authorization": f"Bearer {key}"},
            limits=limits,
            timeout=httpx.Timeout(120, pool=None),
        ) as client:
            yield client

    # ---- the ledger ---------------------------------------------------------------------------

    @asynccontextmanager
    async def engine(self) -> AsyncIterator[AsyncEngine]:
        """An engine of this test's event loop on the gateway's database."""
        engine = create_engine(self.database_url, pool_size=2)
        try:
            yield engine
        finally:
            await engine.dispose()

    async def charges(self, project_id: str) -> list[Charge]:
        """The project's settled charges, oldest first."""
        async with self.engine() as engine, engine.connect() as connection:
            rows = await connection.execute(
                text(
                    "SELECT request_id, model, provider, input_tokens, output_tokens, amount "
                    "FROM ledger_entries WHERE project_id = :p AND kind = 'charge' ORDER BY id"
                ),
                {"p": project_id},
            )
            return [Charge(r[0], r[1], r[2], r[3], r[4], -int(r[5])) for r in rows]

    async def consistent(
        self, *project_ids: str, hard_limits: dict[str, int] | None = None
    ) -> dict[str, Snapshot]:
        """The ledger's invariants hold for the projects (and their hard budgets: budget id
        -> limit); their snapshots."""
        async with self.engine() as engine:
            return await assert_consistent(engine, project_ids, hard_limits=hard_limits)


#: The chat endpoint of each dialect.
CHAT_PATHS = {"openai": "/v1/chat/completions", "anthropic": "/v1/messages"}


def chat_body(max_tokens: int, *, stream: bool = False, model: str = MODEL) -> dict[str, object]:
    """A chat request with `PROMPT` (the same body in both dialects)."""
    body: dict[str, object] = {
        "model": model,
        "messages": [{"role": "user", "content": PROMPT}],
        "max_tokens": max_tokens,
    }
    if stream:
        body["stream"] = True
    return body


def prompt_tokens() -> int:
    """`PROMPT`'s input tokens as the gateway (and the fakes) count them."""
    return counter.count_messages(MODEL, [{"role": "user", "content": PROMPT}]).tokens


def worst_case(max_tokens: int) -> int:
    """What a `chat_body(max_tokens)` request reserves (micro-credits): its prompt as the
    gateway counts it, and `max_tokens` of output."""
    return pricing.max_cost(MODEL, prompt_tokens(), max_tokens).micro_credits


def error_type(dialect: str, response: httpx.Response) -> str:
    """The error's type in `dialect`'s shape (fails if the body is not that shape)."""
    body = response.json()
    if dialect == "anthropic":
        assert body["type"] == "error", body
        kind: str = body["error"]["type"]
        return kind
    assert set(body) == {"error"}, body
    kind = body["error"]["type"]
    return kind


#: The error type of a 402 in each dialect.
NO_CREDITS = {"openai": "insufficient_quota", "anthropic": "billing_error"}


@contextmanager
def billing_world(
    database_url: str,
    *,
    count_tokens: Callable[[str], int] = gateway_tokens,
    reply_words: int = 400,
    chunk_delay_ms: float = 0.0,
    **settings: object,
) -> Iterator[BillingWorld]:
    """See the module documentation; `settings` override the gateway's."""
    with FakeProviders(
        count_tokens=count_tokens, reply_words=reply_words, chunk_delay_ms=chunk_delay_ms
    ) as fakes:
        values: dict[str, object] = {
            "database_url": database_url,
            "oneflow_master_key": MASTER_KEY,
            "fake_providers": "off",
            "log_format": "json",
            "log_requests": False,
            "rate_limit_per_minute": 0,
            "rate_limit_per_hour": 0,
            "upstream_max_retries": 0,
            "circuit_min_calls": 1_000_000,
            "ledger_flush_interval_ms": 1.0,
            **fakes.settings_overrides(),
            **settings,
        }
        app = create_app(Settings(_env_file=None, **values), configure_logs=False)  # type: ignore[arg-type, call-arg]
        with (
            live_server(app) as server,
            httpx.Client(
                base_url=server.url,
                headers={"Authorization": f"Bearer {MASTER_KEY}"},
                timeout=30,
            ) as admin,
        ):
            yield BillingWorld(app, server, fakes, admin, database_url)
