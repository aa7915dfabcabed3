"""Budgets hold during a stream, through the gateway, in both dialects and with their SDKs.

The fake provider here counts tokens at half the gateway's count (as a provider with another
tokenizer may): cut at its own `max_tokens`, its answer runs past what the gateway reserved
for the request. The gateway ends such a stream with an error event the official SDK raises,
and charges exactly what the caller received.
"""

from __future__ import annotations

from collections.abc import Iterator
from decimal import Decimal

import anthropic
import openai
import pytest

from oneflow_ai.domain.usage import Usage
from tests.support.billing_world import (
    MODEL,
    PROMPT,
    BillingWorld,
    billing_world,
    counter,
    gateway_tokens,
    pricing,
    worst_case,
)

MAX_TOKENS = 40
MESSAGES = [{"role": "user", "content": PROMPT}]


def half_count(text: str) -> int:
    return max(1, gateway_tokens(text) // 2)


def openai_stream(world: BillingWorld, key: str, received: list[str]) -> None:
    stream = world.openai(key).chat.completions.create(
        model=MODEL,
        messages=MESSAGES,  # type: ignore[arg-type]
        max_tokens=MAX_TOKENS,
        stream=True,
        stream_options={"include_usage": True},
    )
    for chunk in stream:
        if chunk.choices and chunk.choices[0].delta.content:
            received.append(chunk.choices[0].delta.content)


def anthropic_stream(world: BillingWorld, key: str, received: list[str]) -> None:
    with world.anthropic(key).messages.stream(
        model=MODEL,
        messages=MESSAGES,  # type: ignore[arg-type]
        max_tokens=MAX_TOKENS,
    ) as stream:
        for piece in stream.text_stream:
            received.append(piece)


STREAMS = {"openai": openai_stream, "anthropic": anthropic_stream}


def stream_error_type(dialect: str, error: Exception) -> str:
    """The error type the SDK raised with (from the error event's body)."""
    if dialect == "openai":
        assert isinstance(error, openai.APIError), error
        body = error.body
    else:
        assert isinstance(error, anthropic.APIStatusError), error
        assert isinstance(error.body, dict)
        body = error.body["error"]
    assert isinstance(body, dict), body
    kind = body["type"]
    assert isinstance(kind, str)
    return kind


@pytest.fixture
def overrunning(database_url: str) -> Iterator[BillingWorld]:
    # A chunk at a time (1 ms apart), so that some of the answer arrives before the overrun.
    with billing_world(database_url, count_tokens=half_count, chunk_delay_ms=1) as world:
        yield world


def limit(world: BillingWorld, project: str, kind: str) -> tuple[str | None, int]:
    """Give the project room for ten requests: a prepaid balance, or a hard credits budget or
    tokens quota. Returns the budget's id (None: prepaid) and its limit."""
    if kind == "prepaid":
        world.top_up(project, 10 * worst_case(MAX_TOKENS))
        return None, 10 * worst_case(MAX_TOKENS)
    if kind == "credits budget":
        amount = 10 * worst_case(MAX_TOKENS)
        budget = {"metric": "credits", "period": "day", "limit": str(Decimal(amount) / 1_000_000)}
    else:
        amount = 10 * (counter.count_messages(MODEL, MESSAGES).tokens + MAX_TOKENS)
        budget = {"metric": "tokens", "period": "month", "limit": str(amount)}
    (status,) = world.budgets(project, budget)
    return str(status["id"]), amount


@pytest.mark.parametrize("kind", ["prepaid", "credits budget", "tokens quota"])
@pytest.mark.parametrize("dialect", ["openai", "anthropic"])
async def test_a_stream_that_would_overrun_its_reservation_is_ended_and_charged_as_delivered(
    overrunning: BillingWorld, dialect: str, kind: str
) -> None:
    world = overrunning
    project, key = world.project()
    budget_id, amount = limit(world, project, kind)
    received: list[str] = []
    with pytest.raises((openai.APIError, anthropic.APIError)) as raised:
        STREAMS[dialect](world, key, received)
    assert stream_error_type(dialect, raised.value) == (
        "insufficient_quota" if dialect == "openai" else "billing_error"
    )
    delivered = gateway_tokens("".join(received))
    assert 0 < delivered <= MAX_TOKENS

    (charge,) = await world.charges(project)
    prompt = counter.count_messages(MODEL, MESSAGES).tokens
    assert (charge.input_tokens, charge.output_tokens) == (prompt, delivered)
    expected = pricing.price(MODEL, Usage(input_tokens=prompt, output_tokens=delivered))
    assert charge.micro_credits == expected.micro_credits <= worst_case(MAX_TOKENS)
    hard_limits = {budget_id: amount} if budget_id is not None else {}
    snapshot = (await world.consistent(project, hard_limits=hard_limits))[project]
    assert snapshot.reserved == 0 and snapshot.reservations == 0
    if budget_id is None:
        assert snapshot.balance == amount - charge.micro_credits
    else:
        used = charge.micro_credits if kind == "credits budget" else prompt + delivered
        assert snapshot.counters[budget_id] == (used, 0)


@pytest.mark.parametrize("dialect", ["openai", "anthropic"])
async def test_a_stream_within_its_reservation_ends_normally_and_is_charged_in_full(
    database_url: str, dialect: str
) -> None:
    with billing_world(database_url) as world:
        project, key = world.project()
        world.top_up(project, worst_case(MAX_TOKENS))  # exactly one request's worth
        received: list[str] = []
        STREAMS[dialect](world, key, received)
        (charge,) = await world.charges(project)
        assert charge.output_tokens == MAX_TOKENS  # cut at max_tokens, as the fakes count
        assert charge.micro_credits == worst_case(MAX_TOKENS)
        snapshot = (await world.consistent(project))[project]
        assert snapshot.balance == 0 and snapshot.reserved == 0
