"""A call down its chain of candidates: the first model that answers, the fallbacks and why.

`Chain` runs a call's `invoke(route)` down `call.candidates` until one answers:
`resilience.fallback.run_with_fallbacks` decides what falls through and skips the models whose
circuit is open; a model served by several deployments is one turn down its deployments
(`DeploymentPicker`). A call with one candidate on one deployment (most calls) takes the same
rules without that machinery (`run_alone`). Each upstream attempt is timed, traced, counted
and recorded once, in `call.attempts`; `call.route` is the deployment that answered,
`call.fallbacks` how many models fell through before it, and `call.route_reason` says so
(`routing/reasons.py`).
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Sequence
from functools import partial
from typing import TypeVar

import structlog

from oneflow_ai.catalog import ModelEntry
from oneflow_ai.errors import ProviderError
from oneflow_ai.gateway.call import Attempt, Call
from oneflow_ai.gateway.deployments import DeploymentPicker
from oneflow_ai.observability.telemetry import Telemetry
from oneflow_ai.providers.registry import Route
from oneflow_ai.resilience.fallback import AttemptRecord, Turn, run_alone, run_with_fallbacks
from oneflow_ai.routing.reasons import RouteReason, failed_over, fell_back

__all__ = ["Chain"]

log = structlog.get_logger("oneflow.gateway")

R = TypeVar("R")


class Chain:
    """Runs calls down their candidates over `deployments` (see the module docstring)."""

    def __init__(
        self,
        deployments: DeploymentPicker,
        telemetry: Telemetry,
        need_tokens: Callable[[Call, ModelEntry], int],
    ) -> None:
        self._deployments = deployments
        self._telemetry = telemetry
        self._need_tokens = need_tokens

    async def __call__(self, call: Call, invoke: Callable[[Route], Awaitable[R]]) -> R:
        if len(call.candidates) == 1:
            alone = self._deployments.alone(call.candidates[0])
            if alone is not None:
                return await self._alone(call, invoke, alone)
        routes = {route.model: route for route in call.candidates}
        deployments = self._deployments

        async def turn(turn: Turn) -> R:
            route = routes[turn.model]
            return await deployments.run(
                route,
                partial(self._attempt, call, invoke, turn),
                tokens=partial(self._need_tokens, call, route.entry),
            )

        def open_for(model: str) -> float:
            return deployments.open_for(routes[model])

        result = await run_with_fallbacks(list(routes), turn, open_for=open_for)
        call.fallbacks = result.fallbacks  # call.route: the deployment that answered
        if result.fallbacks:
            call.route_reason = _fallback_reason(result.attempts)
        _note_failover(call)
        return result.value

    async def _alone(self, call: Call, invoke: Callable[[Route], Awaitable[R]], route: Route) -> R:
        """One model on one deployment, nothing to fall back to (most calls): the same rules
        and errors as the way down a chain (`run_alone`), without its bookkeeping."""
        wait = self._deployments.open_for(route)
        result = await run_alone(
            route.model, lambda turn: self._attempt(call, invoke, turn, route), wait=wait
        )
        call.fallbacks = 0
        _note_failover(call)
        return result

    async def _attempt(
        self, call: Call, invoke: Callable[[Route], Awaitable[R]], turn: Turn, route: Route
    ) -> R:
        """One upstream attempt on `route`: timed, traced and recorded in `call.attempts`."""
        if call.attempts:  # an earlier candidate or deployment failed
            _log_fallback(call.attempts[-1], route)
        call.route = route
        started = time.perf_counter()
        with self._telemetry.upstream_attempt(
            provider=route.provider_name,
            model=route.model,
            operation=call.operation,
            attempt=turn.index + 1,
            stream=call.stream,
            max_tokens=getattr(call.request, "max_tokens", None),
        ):
            try:
                result = await invoke(route)
            except ProviderError as exc:
                call.attempts.append(
                    Attempt(route.model, route.provider_name, _since(started), exc, started)
                )
                raise
        call.attempts.append(
            Attempt(route.model, route.provider_name, _since(started), None, started)
        )
        return result


def _note_failover(call: Call) -> None:
    """Name the deployments of the answering model that failed before it, in the reason."""
    answered = call.route
    if answered is None or call.route_reason is None:
        return
    passed = [
        (a.provider, a.error.kind)
        for a in call.attempts
        if a.model == answered.model and a.error is not None
    ]
    if passed:
        call.route_reason = failed_over(call.route_reason, passed, answered.provider_name)


def _log_fallback(failed: Attempt, route: Route) -> None:
    kind = failed.error.kind if failed.error is not None else "error"
    log.info(
        "fallback",
        failed_model=failed.model,
        failed_provider=failed.provider,
        error=kind,
        next_model=route.model,
        next_provider=route.provider_name,
    )


def _fallback_reason(records: Sequence[AttemptRecord]) -> RouteReason:
    """Which models the chain moved past before the answering one (the last record), and why."""
    *passed, answered = records
    steps = [
        (r.model, getattr(r.error, "kind", "error") if r.outcome == "failed" else None)
        for r in passed
    ]
    return fell_back(steps, answered.model)


def _since(started: float) -> float:
    return (time.perf_counter() - started) * 1000
