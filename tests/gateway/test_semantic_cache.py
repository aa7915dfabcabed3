"""The semantic cache end to end: the gateway over HTTP in front of the fake providers, whose
embeddings make similarity controllable (`{{near:TOPIC:S}}`, oneflow_fakes/openai_embeddings.py),
with the in-process index (SQLite) and pgvector (PostgreSQL) (docs/cache.md#semantic-cache)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import httpx
import pytest
from sqlalchemy import text

from oneflow_ai.domain.money import micro_credits_to_credits
from oneflow_ai.gateway.cache_hook import ResponseCache
from oneflow_ai.storage.database import create_engine
from tests.support.billing_world import MODEL, BillingWorld, billing_world
from tests.support.databases import migrated_sqlite_url
from tests.support.pgvector import pgvector_missing

EMBEDDER = "text-embedding-3-small"
QUESTION = "What is the capital of France? {{near:paris}}"
CLOSE = "Tell me which city is France's capital {{near:paris:0.97}}"
FAR = "Which French city is the largest? {{near:paris:0.8}}"
#: The project of each world (by the world's id), and its key.
PROJECTS: dict[int, tuple[str, str]] = {}


def _index_kind(world: BillingWorld) -> str:
    hook = next(h for h in world.app.state.services.pipeline.hooks if isinstance(h, ResponseCache))
    assert hook.semantic is not None
    return hook.semantic.index.kind


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def database(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return migrated_sqlite_url(tmp_path / "semantic.db")
    url: str = request.getfixturevalue("postgres_url")
    return url


@pytest.fixture
def world(database: str) -> Iterator[BillingWorld]:
    project = f"sem-{uuid.uuid4().hex[:8]}"
    policy = {"semantic": {"model": EMBEDDER, "threshold": 0.9}}
    with billing_world(database, reply_words=30, cache_projects={project: policy}) as world:
        world.admin_call("POST", "/api/v1/projects", {"name": project, "id": project})
        PROJECTS[id(world)] = (project, world.key(project))
        if database.startswith("postgresql"):
            assert_pgvector(world)
        yield world


def assert_pgvector(world: BillingWorld) -> None:
    """On PostgreSQL the index is pgvector's: a failure when services are required (CI), a
    skip otherwise (scripts/install-pgvector.sh installs it)."""
    if _index_kind(world) == "pgvector":
        return
    pgvector_missing()


def _ask(
    world: BillingWorld, question: str, *, system: str = "Be brief.", stream: bool = False
) -> httpx.Response:
    body: dict[str, object] = {
        "model": MODEL,
        "max_tokens": 50,
        "messages": [
            {"role": "system", "content": system},
            {"role": "user", "content": question},
        ],
    }
    if stream:
        body["stream"] = True
    return _post(world, "/v1/chat/completions", body)


def _post(world: BillingWorld, path: str, body: dict[str, object]) -> httpx.Response:
    key = PROJECTS[id(world)][1]
    response = httpx.post(
        f"{world.url}{path}", json=body, headers={"Authorization": f"Bearer {key}"}, timeout=30
    )
    assert response.status_code == 200, response.text
    return response


def _chat_calls(world: BillingWorld) -> int:
    return world.fakes.call_count() - _embedding_calls(world)


def _embedding_calls(world: BillingWorld) -> int:
    return len(world.fakes.calls(endpoint="embeddings"))


def test_a_paraphrase_above_the_threshold_is_answered_from_the_cache(world: BillingWorld) -> None:
    first = _ask(world, QUESTION)
    close = _ask(world, CLOSE)
    assert first.headers["x-oneflow-cache"] == "miss"
    assert close.headers["x-oneflow-cache"] == "hit"
    assert close.headers["x-oneflow-cache-similarity"] == "0.970"
    assert "x-oneflow-cache-similarity" not in first.headers
    answer = close.json()["choices"][0]["message"]["content"]
    assert answer == first.json()["choices"][0]["message"]["content"]
    assert _chat_calls(world) == 1
    streamed = _ask(world, CLOSE.replace("Tell me", "Say"), stream=True)  # a stream hits too
    assert streamed.headers["x-oneflow-cache"] == "hit"
    assert "data: [DONE]" in streamed.text
    assert _chat_calls(world) == 1
    assert world.metric("oneflow_cache_requests_total", result="hit", kind="semantic") == 2


def test_a_paraphrase_below_the_threshold_is_a_miss(world: BillingWorld) -> None:
    _ask(world, QUESTION)
    far = _ask(world, FAR)
    assert far.headers["x-oneflow-cache"] == "miss"
    assert "x-oneflow-cache-similarity" not in far.headers
    assert _chat_calls(world) == 2
    assert _ask(world, FAR).headers["x-oneflow-cache"] == "hit"  # now stored: an exact hit


def test_another_system_prompt_is_another_scope(world: BillingWorld) -> None:
    _ask(world, QUESTION)
    other = _ask(world, CLOSE, system="Answer in French.")
    assert other.headers["x-oneflow-cache"] == "miss"
    same_words = _ask(world, QUESTION, system="Answer in French.")  # similarity 1, other scope
    assert same_words.headers["x-oneflow-cache"] == "hit"  # ... of the answer just stored
    assert same_words.headers["x-oneflow-cache-similarity"] == "0.970"
    assert _chat_calls(world) == 2


async def test_the_embedding_call_is_billed_and_the_saving_shows_in_usage(
    world: BillingWorld,
) -> None:
    project = PROJECTS[id(world)][0]
    first = _ask(world, QUESTION)
    hit = _ask(world, CLOSE)
    assert _embedding_calls(world) == 2  # each question was embedded, billed to the project
    charges = await world.charges(project)
    embeddings = [c for c in charges if c.model == EMBEDDER]
    chats = [c for c in charges if c.model == MODEL]
    assert len(embeddings) == 2 and all(c.micro_credits > 0 for c in embeddings)
    assert Decimal(hit.headers["x-oneflow-cache-embedding-credits"]) == micro_credits_to_credits(
        embeddings[1].micro_credits
    )
    assert Decimal(first.headers["x-oneflow-cache-embedding-credits"]) > 0
    live, cached = chats
    assert cached.micro_credits == 0  # hit_fraction 0
    report = world.admin_call("GET", "/api/v1/usage", project=project, group_by="model").json()
    groups = {group["model"]: group for group in report["groups"]}
    assert groups[EMBEDDER]["requests"] == 2
    assert (groups[MODEL]["requests"], groups[MODEL]["cache_hits"]) == (2, 1)
    assert Decimal(groups[MODEL]["credits_saved"]) == micro_credits_to_credits(live.micro_credits)


async def test_an_index_that_fails_makes_misses_not_errors(world: BillingWorld) -> None:
    _ask(world, QUESTION)
    if _index_kind(world) == "pgvector":  # the table goes away under the running gateway
        engine = create_engine(world.database_url, pool_size=1)
        try:
            async with engine.begin() as connection:
                await connection.execute(
                    text("ALTER TABLE semantic_cache_entries RENAME TO semantic_gone")
                )
        finally:
            await engine.dispose()
    else:
        hook = next(
            h for h in world.app.state.services.pipeline.hooks if isinstance(h, ResponseCache)
        )
        assert hook.semantic is not None

        async def broken(*_: object) -> None:
            raise ConnectionError("index away")

        hook.semantic.index.nearest = broken  # type: ignore[method-assign, assignment]
    answers = [_ask(world, CLOSE), _ask(world, FAR)]
    assert [a.headers["x-oneflow-cache"] for a in answers] == ["miss", "miss"]
    assert _chat_calls(world) == 3


def test_without_an_embedding_model_the_calls_go_on(tmp_path: Path) -> None:
    project = f"sem-{uuid.uuid4().hex[:8]}"
    policy = {"semantic": {"model": "no-such-embedder", "threshold": 0.9}}
    with billing_world(
        migrated_sqlite_url(tmp_path / "semantic.db"),
        reply_words=30,
        cache_projects={project: policy},
    ) as world:
        world.admin_call("POST", "/api/v1/projects", {"name": project, "id": project})
        PROJECTS[id(world)] = (project, world.key(project))
        answers = [_ask(world, QUESTION), _ask(world, CLOSE), _ask(world, QUESTION)]
        assert [a.headers["x-oneflow-cache"] for a in answers] == ["miss", "miss", "hit"]


def test_a_project_turns_it_on_through_the_projects_api(tmp_path: Path) -> None:
    project = f"sem-{uuid.uuid4().hex[:8]}"
    with billing_world(migrated_sqlite_url(tmp_path / "semantic.db"), reply_words=30) as world:
        world.admin_call("POST", "/api/v1/projects", {"name": project, "id": project})
        defaulted = world.admin.patch(
            f"/api/v1/projects/{project}", json={"cache": {"semantic": {"model": EMBEDDER}}}
        )
        assert defaulted.status_code == 200  # the threshold has a default (0.95)
        wrong = world.admin.patch(
            f"/api/v1/projects/{project}",
            json={"cache": {"semantic": {"model": EMBEDDER, "threshold": 1.5}}},
        )
        assert wrong.status_code in (400, 422), wrong.text
        assert "threshold" in wrong.text
        policy = {"semantic": {"model": EMBEDDER, "threshold": 0.96}}
        changed = world.admin.patch(f"/api/v1/projects/{project}", json={"cache": policy})
        assert changed.status_code == 200, changed.text
        assert changed.json()["cache"]["semantic"] == policy["semantic"]
        PROJECTS[id(world)] = (project, world.key(project))
        answers = [_ask(world, QUESTION), _ask(world, CLOSE)]
        assert [a.headers["x-oneflow-cache"] for a in answers] == ["miss", "hit"]
        assert answers[1].headers["x-oneflow-cache-similarity"] == "0.970"


def test_a_paraphrase_in_the_other_dialect_is_answered_in_its_own(world: BillingWorld) -> None:
    first = _ask(world, QUESTION)
    body: dict[str, object] = {
        "model": MODEL,
        "max_tokens": 50,
        "system": "Be brief.",
        "messages": [{"role": "user", "content": CLOSE}],
    }
    close = _post(world, "/v1/messages", body)
    assert close.headers["x-oneflow-cache"] == "hit"
    assert close.headers["x-oneflow-cache-similarity"] == "0.970"
    assert close.json()["type"] == "message"
    text = close.json()["content"][0]["text"]
    assert text == first.json()["choices"][0]["message"]["content"]


@pytest.mark.postgres
async def test_postgresql_without_pgvector_keeps_the_index_in_process(postgres_url: str) -> None:
    engine = create_engine(postgres_url, pool_size=1)
    try:  # as migration 0011 leaves it where the extension cannot be created
        async with engine.begin() as connection:
            await connection.execute(
                text("ALTER TABLE semantic_cache_entries DROP COLUMN IF EXISTS embedding")
            )
    finally:
        await engine.dispose()
    project = f"sem-{uuid.uuid4().hex[:8]}"
    policy = {"semantic": {"model": EMBEDDER, "threshold": 0.9}}
    with billing_world(postgres_url, reply_words=30, cache_projects={project: policy}) as world:
        world.admin_call("POST", "/api/v1/projects", {"name": project, "id": project})
        PROJECTS[id(world)] = (project, world.key(project))
        assert _index_kind(world) == "memory"
        answers = [_ask(world, QUESTION), _ask(world, CLOSE)]
        assert [a.headers["x-oneflow-cache"] for a in answers] == ["miss", "hit"]
