"""The semantic cache across two gateway processes sharing PostgreSQL (pgvector) and Redis.

A question asked through one replica is found, paraphrased, through the other: its question
is in pgvector's table and its answer in Redis. Each question is embedded once per request
that asks it, charged to the project; the hit is charged nothing (hit fraction 0) and the
ledger stays consistent (docs/cache.md#semantic-cache).
"""

from __future__ import annotations

from contextlib import ExitStack
from decimal import Decimal
from pathlib import Path

import httpx
import orjson
import pytest

from oneflow_ai.storage.database import create_engine
from oneflow_fakes import FakeProviders
from tests.conftest import redis_server_url
from tests.support.gateway_load import gateway_env, new_project
from tests.support.gateway_process import gateway_process
from tests.support.ledger import assert_consistent

PROJECT = "semantic"
EMBEDDER = "text-embedding-3-small"
POLICY = {PROJECT: {"semantic": {"model": EMBEDDER, "threshold": 0.9}}}


def _ask(url: str, key: str, question: str) -> httpx.Response:
    body = {
        "model": "gpt-4o",
        "max_tokens": 40,
        "messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": question},
        ],
    }
    response = httpx.post(
        f"{url}/v1/chat/completions",
        json=body,
        headers={"Authorization": f"Bearer {key}"},
        timeout=30,
    )
    assert response.status_code == 200, response.text
    return response


@pytest.mark.postgres
@pytest.mark.redis
async def test_a_paraphrase_asked_on_another_replica_is_a_hit(
    postgres_url: str, redis_prefix: str, tmp_path: Path
) -> None:
    redis = redis_server_url()
    assert redis is not None
    with FakeProviders() as fakes, ExitStack() as stack:
        env = gateway_env(
            postgres_url,
            fakes,
            REDIS_URL=redis,
            REDIS_KEY_PREFIX=redis_prefix,
            CACHE_PROJECTS=orjson.dumps(POLICY).decode(),
        )
        a, b = (
            stack.enter_context(gateway_process(env, tmp_path / f"replica-{i}.log"))
            for i in range(2)
        )
        key = new_project(a.url, PROJECT)
        first = _ask(a.url, key, "What is the capital of France? {{near:paris}}")
        close = _ask(b.url, key, "Name France's capital city {{near:paris:0.95}}")
        far = _ask(b.url, key, "What is France's largest port? {{near:paris:0.5}}")
    assert [r.headers["x-oneflow-cache"] for r in (first, close, far)] == ["miss", "hit", "miss"]
    assert close.headers["x-oneflow-cache-similarity"] == "0.950"
    assert close.json()["choices"][0]["message"] == first.json()["choices"][0]["message"]
    assert len(fakes.calls(endpoint="embeddings")) == 3
    assert len(fakes.calls(endpoint="chat")) + len(fakes.calls(endpoint="responses")) == 2
    engine = create_engine(postgres_url, pool_size=1)
    try:
        await assert_consistent(engine, [PROJECT])
        async with engine.connect() as connection:
            rows = (
                await connection.exec_driver_sql(
                    "SELECT model, -amount FROM ledger_entries "
                    f"WHERE project_id = '{PROJECT}' AND kind = 'charge' ORDER BY id"
                )
            ).all()
            indexed = (
                await connection.exec_driver_sql("SELECT count(*) FROM semantic_cache_entries")
            ).scalar_one()
    finally:
        await engine.dispose()
    embedded = [int(amount) for model, amount in rows if model == EMBEDDER]
    chats = [int(amount) for model, amount in rows if model == "gpt-4o"]
    assert len(embedded) == 3 and all(amount > 0 for amount in embedded)
    assert len(chats) == 3 and chats[1] == 0 and min(chats[0], chats[2]) > 0
    assert Decimal(close.headers["x-oneflow-cache-embedding-credits"]) > 0
    assert indexed == 2  # the two questions answered live
