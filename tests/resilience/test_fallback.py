"""The fallback executor: down the chain on a provider's failure, never after a commit."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from oneflow_ai.errors import (
    AuthenticationError,
    ContentFilteredError,
    InsufficientCreditsError,
    ProviderAuthError,
    ProviderBadRequestError,
    ProviderError,
    ProviderRateLimitedError,
    ProviderTimeoutError,
    ProviderUnavailableError,
)
from oneflow_ai.resilience import (
    AttemptRecord,
    CircuitOpenError,
    Turn,
    falls_through,
    prime,
    run_with_fallbacks,
)
from oneflow_ai.resilience.fallback import run_alone

CHAIN = ["claude-3-haiku-20240307", "gpt-3.5-turbo", "gpt-4o"]


def scripted(outcomes: dict[str, BaseException | str]):  # type: ignore[no-untyped-def]
    seen: list[str] = []

    async def attempt(turn: Turn) -> str:
        seen.append(turn.model)
        outcome = outcomes[turn.model]
        if isinstance(outcome, BaseException):
            raise outcome
        return outcome

    return attempt, seen


async def test_the_primary_answers() -> None:
    attempt, seen = scripted({m: f"answer from {m}" for m in CHAIN})
    result = await run_with_fallbacks(CHAIN, attempt)
    assert result.value == "answer from claude-3-haiku-20240307"
    assert (result.model, result.fallbacks) == ("claude-3-haiku-20240307", 0)
    assert result.headers() == {
        "X-OneFlow-Model": "claude-3-haiku-20240307",
        "X-OneFlow-Fallbacks": "0",
    }
    assert seen == ["claude-3-haiku-20240307"]


@pytest.mark.parametrize(
    "error",
    [
        ProviderUnavailableError("500"),
        ProviderTimeoutError("timeout"),
        ProviderRateLimitedError("429", retry_after=30),
        ProviderAuthError("our key for this provider was refused"),
        CircuitOpenError("anthropic", retry_after=3, provider="anthropic", model=None),
    ],
)
async def test_retryable_failures_fall_through(error: ProviderError) -> None:
    attempt, seen = scripted(
        {CHAIN[0]: error, CHAIN[1]: ProviderUnavailableError("also down"), CHAIN[2]: "ok"}
    )
    records: list[AttemptRecord] = []
    result = await run_with_fallbacks(CHAIN, attempt, on_attempt=records.append)
    assert (result.value, result.model, result.fallbacks) == ("ok", "gpt-4o", 2)
    assert seen == CHAIN
    assert [r.outcome for r in records] == ["failed", "failed", "answered"]
    assert records[0].error is error
    assert result.headers()["X-OneFlow-Fallbacks"] == "2"


@pytest.mark.parametrize(
    "error",
    [
        ProviderBadRequestError("messages: field required"),
        ContentFilteredError("refused"),
        AuthenticationError("the caller's key is invalid"),
        InsufficientCreditsError("balance too low"),
        RuntimeError("a bug"),
    ],
)
async def test_other_errors_do_not_fall_through(error: Exception) -> None:
    attempt, seen = scripted({CHAIN[0]: error, CHAIN[1]: "ok", CHAIN[2]: "ok"})
    with pytest.raises(type(error)):
        await run_with_fallbacks(CHAIN, attempt)
    assert len(seen) == 1
    assert not falls_through(error)


async def test_open_circuits_are_skipped_without_a_call() -> None:
    attempt, seen = scripted({m: f"from {m}" for m in CHAIN})
    result = await run_with_fallbacks(
        CHAIN, attempt, open_for=lambda model: 12.0 if model == CHAIN[0] else 0.0
    )
    assert (result.model, result.fallbacks) == ("gpt-3.5-turbo", 1)
    assert seen == ["gpt-3.5-turbo"]
    assert [r.outcome for r in result.attempts] == ["skipped", "answered"]


async def test_every_circuit_open_is_a_503_with_the_soonest_retry() -> None:
    attempt, seen = scripted({m: "never" for m in CHAIN})
    waits = {CHAIN[0]: 9.0, CHAIN[1]: 4.0, CHAIN[2]: 6.0}
    with pytest.raises(ProviderUnavailableError) as caught:
        await run_with_fallbacks(CHAIN, attempt, open_for=waits.__getitem__)
    assert caught.value.code == "all_circuits_open" and caught.value.retry_after == 4.0
    assert seen == []


async def test_when_every_model_fails_the_last_error_is_raised_with_the_chain() -> None:
    last = ProviderTimeoutError("gpt-4o timed out")
    attempt, _ = scripted(
        {
            CHAIN[0]: ProviderUnavailableError("a"),
            CHAIN[1]: ProviderUnavailableError("b"),
            CHAIN[2]: last,
        }
    )
    with pytest.raises(ProviderTimeoutError) as caught:
        await run_with_fallbacks(CHAIN, attempt)
    assert caught.value is last
    assert "fallback chain exhausted" in caught.value.__notes__[0]


async def test_max_attempts_limits_the_calls() -> None:
    attempt, seen = scripted({m: ProviderUnavailableError(m) for m in CHAIN})
    with pytest.raises(ProviderUnavailableError):
        await run_with_fallbacks(CHAIN, attempt, max_attempts=2)
    assert len(seen) == 2


async def test_nothing_falls_through_after_a_commit() -> None:
    calls: list[str] = []

    async def attempt(turn: Turn) -> str:
        calls.append(turn.model)
        turn.commit()  # e.g. the first bytes went to the client
        raise ProviderUnavailableError("the connection dropped mid-answer")

    with pytest.raises(ProviderUnavailableError):
        await run_with_fallbacks(CHAIN, attempt)
    assert calls == [CHAIN[0]]


async def events(items: list[str], fail_at: int | None) -> AsyncIterator[str]:
    for index, item in enumerate(items):
        if index == fail_at:
            raise ProviderUnavailableError(f"dropped at event {index}")
        yield item


async def test_a_stream_failing_before_its_first_event_falls_back() -> None:
    async def attempt(turn: Turn) -> AsyncIterator[str]:
        fail_at = 0 if turn.model == CHAIN[0] else None
        return await prime(events([f"{turn.model}:1", f"{turn.model}:2"], fail_at))

    result = await run_with_fallbacks(CHAIN, attempt)
    assert result.model == CHAIN[1] and result.fallbacks == 1
    assert [e async for e in result.value] == ["gpt-3.5-turbo:1", "gpt-3.5-turbo:2"]


async def test_a_stream_failing_after_its_first_event_is_not_retried() -> None:
    tried: list[str] = []

    async def attempt(turn: Turn) -> AsyncIterator[str]:
        tried.append(turn.model)
        return await prime(events(["one", "two", "three"], fail_at=2))

    result = await run_with_fallbacks(CHAIN, attempt)
    received = []
    with pytest.raises(ProviderUnavailableError):
        async for event in result.value:
            received.append(event)
    assert received == ["one", "two"] and tried == [CHAIN[0]]


async def test_an_empty_stream_primes_to_an_empty_iterator() -> None:
    primed = await prime(events([], None))
    assert [e async for e in primed] == []


# ---- a chain of one model: run_alone takes the same rules as run_with_fallbacks ----------


async def _both(
    make: type[BaseException] | None, *, wait: float = 0.0, commit: bool = False
) -> list[tuple[str, object, list[str]]]:
    """What `run_with_fallbacks([model])` and `run_alone(model)` each give: the answer, or the
    error's type, code, retry_after and notes."""
    outcomes: list[tuple[str, object, list[str]]] = []
    for run in ("chain", "alone"):

        async def attempt(turn: Turn) -> str:
            if commit:
                turn.commit()
            if make is not None:
                raise make("failed")
            return f"answer from {turn.model}"

        try:
            if run == "chain":
                value: object = (
                    await run_with_fallbacks(["gpt-4o"], attempt, open_for=lambda _: wait)
                ).value
            else:
                value = await run_alone("gpt-4o", attempt, wait=wait)
            outcomes.append(("answered", value, []))
        except Exception as exc:
            detail = (type(exc), getattr(exc, "code", None), getattr(exc, "retry_after", None))
            outcomes.append(("raised", detail, getattr(exc, "__notes__", [])))
    return outcomes


@pytest.mark.parametrize(
    "make",
    [None, ProviderUnavailableError, ProviderTimeoutError, ProviderBadRequestError, ValueError],
)
async def test_run_alone_answers_and_fails_as_a_chain_of_one_does(
    make: type[BaseException] | None,
) -> None:
    chain, alone = await _both(make)
    assert alone == chain
    if make is ProviderUnavailableError:  # falls through: the chain ran out
        assert alone[2] == ["fallback chain exhausted (gpt-4o: failed)"]


async def test_run_alone_after_a_commit_raises_as_it_is() -> None:
    chain, alone = await _both(ProviderUnavailableError, commit=True)
    assert alone == chain
    assert alone[2] == []


async def test_run_alone_with_the_circuit_open_calls_nothing() -> None:
    chain, alone = await _both(None, wait=4.0)
    assert alone == chain
    assert alone[1] == (ProviderUnavailableError, "all_circuits_open", 4.0)
