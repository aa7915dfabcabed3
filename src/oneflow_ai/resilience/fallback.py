"""Running a request down a chain of models until one answers.

>>> result = await run_with_fallbacks(
...     [decision.primary_model, *decision.fallback_chain],
...     lambda attempt: provider_for(attempt.model).chat(request, attempt.model),
...     open_for=lambda model: breakers.open_for(provider_of(model), model),
... )
>>> result.value, result.model, result.fallbacks, result.headers()

Rules:

- Models whose circuit is open (``open_for(model) > 0``) are skipped without a call.
- A failure moves on to the next model only when it is a provider's failure that another model
  may not share: unavailable/overloaded, timeout, rate-limited, an open circuit, or the
  provider refusing OneFlow's own credentials (:func:`falls_through`). A bad request, filtered
  content, or any error of OneFlow itself (the caller's auth, limits, budget) is raised at once.
- Once an attempt has *committed* (``attempt.commit()``: the first byte of the answer went to
  the client) nothing falls through any more: a later failure is raised as it is. An attempt
  that returns a primed stream (:func:`prime`) has not sent anything yet; the executor is done
  when it returns, so failures later in that stream are the caller's to end the stream with.
- The attempt is handed its model (``Turn.model``) and passes it on to the upstream call
  explicitly (``UpstreamRequest.model``), which keys the per-model circuit breaker.
- When every model failed, the last failure is raised (the chain is in its notes); when every
  model was skipped, a ``ProviderUnavailableError`` (code ``all_circuits_open``) with
  ``retry_after`` set to the soonest reopening.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Generic, Literal, TypeVar

from oneflow_ai.errors import ProviderAuthError, ProviderError, ProviderUnavailableError

__all__ = [
    "AttemptRecord",
    "FallbackResult",
    "Turn",
    "falls_through",
    "prime",
    "run_alone",
    "run_with_fallbacks",
]

T = TypeVar("T")


def falls_through(error: BaseException) -> bool:
    """Whether ``error`` from one model lets the next model in the chain be tried."""
    if not isinstance(error, ProviderError):
        return False
    return error.retryable or isinstance(error, ProviderAuthError)


@dataclass(slots=True)
class Turn:
    """One model's turn; ``commit()`` once any byte of its answer has reached the client."""

    model: str
    index: int
    committed: bool = False

    def commit(self) -> None:
        self.committed = True


@dataclass(frozen=True, slots=True)
class AttemptRecord:
    model: str
    outcome: Literal["answered", "failed", "skipped"]
    error: BaseException | None = None
    elapsed: float = 0.0


@dataclass(frozen=True, slots=True)
class FallbackResult(Generic[T]):
    """The answer, the model that gave it, and how many models before it fell through."""

    value: T
    model: str
    fallbacks: int
    attempts: tuple[AttemptRecord, ...] = field(default=())

    def headers(self) -> dict[str, str]:
        """Response headers naming the model that answered and how many fell through."""
        return {"X-OneFlow-Model": self.model, "X-OneFlow-Fallbacks": str(self.fallbacks)}


async def run_with_fallbacks(
    chain: Sequence[str],
    attempt: Callable[[Turn], Awaitable[T]],
    *,
    open_for: Callable[[str], float] | None = None,
    should_fall_through: Callable[[BaseException], bool] = falls_through,
    max_attempts: int | None = None,
    on_attempt: Callable[[AttemptRecord], None] | None = None,
    clock: Callable[[], float] = time.monotonic,
) -> FallbackResult[T]:
    """Try ``chain`` in order (see the module docstring); at most ``max_attempts`` calls."""
    if not chain:
        raise ValueError("the chain names no model")
    records: list[AttemptRecord] = []
    last_error: BaseException | None = None
    soonest: float | None = None
    calls = 0

    def note(record: AttemptRecord) -> None:
        records.append(record)
        if on_attempt is not None:
            on_attempt(record)

    for index, model in enumerate(chain):
        if max_attempts is not None and calls >= max_attempts:
            break
        wait = open_for(model) if open_for is not None else 0.0
        if wait > 0:
            soonest = wait if soonest is None else min(soonest, wait)
            note(AttemptRecord(model, "skipped"))
            continue
        calls += 1
        turn = Turn(model=model, index=index)
        started = clock()
        try:
            value = await attempt(turn)
        except Exception as exc:
            note(AttemptRecord(model, "failed", exc, clock() - started))
            if turn.committed or not should_fall_through(exc):
                raise
            last_error = exc
            continue
        note(AttemptRecord(model, "answered", None, clock() - started))
        return FallbackResult(value, model, index, tuple(records))

    if last_error is not None:
        _note_exhausted(last_error, ", ".join(f"{r.model}: {r.outcome}" for r in records))
        raise last_error
    raise _all_open(soonest)


async def run_alone(model: str, attempt: Callable[[Turn], Awaitable[T]], *, wait: float = 0.0) -> T:
    """``run_with_fallbacks([model], attempt, open_for=...)`` for a chain of one model (most
    calls), without the records and the result it builds for fallbacks: the same rules, the
    same errors. ``wait`` is what ``open_for(model)`` says (> 0: its circuit is open)."""
    if wait > 0:
        raise _all_open(wait)
    turn = Turn(model=model, index=0)
    try:
        return await attempt(turn)
    except Exception as exc:
        if not turn.committed and falls_through(exc):
            _note_exhausted(exc, f"{model}: failed")
        raise


def _note_exhausted(error: BaseException, tried: str) -> None:
    """The last failure of a chain that ran out of models gets the chain in its notes."""
    error.add_note(f"fallback chain exhausted ({tried})")


def _all_open(soonest: float | None) -> ProviderUnavailableError:
    return ProviderUnavailableError(
        "No model is available: the circuit of every model in the chain is open",
        code="all_circuits_open",
        retry_after=soonest,
    )


async def prime(stream: AsyncIterator[T]) -> AsyncIterator[T]:
    """Pull ``stream``'s first item now and return an iterator over all of it.

    An upstream failure before the first event therefore raises here, inside the attempt,
    where the executor can still fall back; nothing has been sent to the client yet.
    """
    try:
        first = await anext(stream)
    except StopAsyncIteration:
        return _empty()
    return _chain(first, stream)


async def _chain(first: T, rest: AsyncIterator[T]) -> AsyncIterator[T]:
    yield first
    async for item in rest:
        yield item


async def _empty() -> AsyncIterator[T]:
    nothing: tuple[T, ...] = ()
    for item in nothing:
        yield item
