"""A prepaid balance holds under 1,000 concurrent requests through the running gateway."""

from __future__ import annotations

import asyncio

import httpx

from tests.support.billing_world import (
    CHAT_PATHS,
    NO_CREDITS,
    billing_world,
    chat_body,
    error_type,
    worst_case,
)

REQUESTS = 1_000
COVERED = 100
MAX_TOKENS = 40


async def test_a_balance_for_100_requests_answers_exactly_100_of_1000(database_url: str) -> None:
    with billing_world(database_url) as world:
        project, key = world.project()
        each = worst_case(MAX_TOKENS)  # the fakes cut every answer at max_tokens: worst = actual
        world.top_up(project, COVERED * each)
        dialects = ["openai", "anthropic"] * (REQUESTS // 2)
        async with world.client(key, connections=100) as client:

            async def one(dialect: str) -> httpx.Response:
                return await client.post(CHAT_PATHS[dialect], json=chat_body(MAX_TOKENS))

            responses = await asyncio.gather(*(one(dialect) for dialect in dialects))

        answered = [r for r in responses if r.status_code == 200]
        refused = [(d, r) for d, r in zip(dialects, responses, strict=True) if r.status_code == 402]
        assert len(answered) == COVERED
        assert len(refused) == REQUESTS - COVERED
        assert all(error_type(d, r) == NO_CREDITS[d] for d, r in refused)

        snapshot = (await world.consistent(project))[project]
        assert snapshot.balance == 0
        assert snapshot.reserved == 0 and snapshot.reservations == 0
        answered_ids = {r.headers["x-oneflow-request-id"] for r in answered}
        assert set(snapshot.charges) == answered_ids
        assert set(snapshot.charges.values()) == {each}
        assert snapshot.usage_records == REQUESTS  # the refused ones are counted too
