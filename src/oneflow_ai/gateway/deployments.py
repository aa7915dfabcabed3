"""Calling one model when several deployments serve it.

The pipeline walks the chain of models (`resilience.fallback`); each model's turn is
`DeploymentPicker.run`: its deployments in the balancer's order (`routing.balancer`: weights
or least in flight, with rate-limit headroom and open circuits pushing a deployment back), the
next one tried when a call fails in a way another deployment may not share (the same rule as
between models: `falls_through`). Deployments whose circuit is open are skipped without a call.
When all of them failed, the last failure is the model's, and the chain moves on to the next
model. A model with one deployment is called as it always was.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import TypeVar

from oneflow_ai.errors import ProviderError, ProviderUnavailableError
from oneflow_ai.providers.registry import Deployments, ProviderRegistry, Route
from oneflow_ai.resilience.breaker_set import CircuitBreakers
from oneflow_ai.resilience.fallback import falls_through
from oneflow_ai.resilience.load import DeploymentLoad, deployment_key
from oneflow_ai.routing.balancer import DeploymentBalancer, DeploymentState

__all__ = ["DeploymentCircuits", "DeploymentPicker"]

R = TypeVar("R")


class DeploymentPicker:
    """Orders and calls the deployments of a model (module docstring)."""

    def __init__(
        self,
        registry: ProviderRegistry,
        *,
        breakers: CircuitBreakers | None = None,
        load: DeploymentLoad | None = None,
        balancer: DeploymentBalancer | None = None,
    ) -> None:
        self.registry = registry
        self.breakers = breakers
        self.load = load
        self.balancer = balancer or DeploymentBalancer()

    def _open_for(self, route: Route) -> float:
        breakers = self.breakers
        return breakers.open_for(route.provider_name, route.upstream_model) if breakers else 0.0

    def open_for(self, route: Route) -> float:
        """How long until some deployment of `route`'s model takes calls (0: one does now)."""
        routes = self.registry.deployments(route.entry).routes
        if len(routes) == 1:  # the common case, asked once per call
            wait = self._open_for(routes[0])
            return wait if wait > 0 else 0.0
        waits = [self._open_for(r) for r in routes]
        return 0.0 if any(wait <= 0 for wait in waits) else min(waits)

    def alone(self, route: Route) -> Route | None:
        """The one deployment of `route`'s model, when it has only one (no order to choose)."""
        routes = self.registry.deployments(route.entry).routes
        return routes[0] if len(routes) == 1 else None

    def order(self, deployments: Deployments, tokens: int = 0) -> list[Route]:
        """The deployments to try, first first; `tokens` is what the call may use (prompt
        plus answer), compared with the headroom each provider reported."""
        routes = deployments.routes
        if len(routes) == 1:
            return list(routes)
        load = self.load
        states = []
        for route, weight in zip(routes, deployments.weights, strict=True):
            key = deployment_key(route.provider_name, route.upstream_model)
            states.append(
                DeploymentState(
                    key=key,
                    weight=weight,
                    in_flight=load.in_flight(key) if load is not None else 0,
                    open_for=self._open_for(route),
                    short=load.short(key, tokens) if load is not None else False,
                )
            )
        order = self.balancer.order(routes[0].model, states, deployments.balance)
        return [routes[i] for i in order]

    async def run(
        self,
        route: Route,
        call_one: Callable[[Route], Awaitable[R]],
        *,
        tokens: Callable[[], int] = lambda: 0,
    ) -> R:
        """`call_one` on the deployments of `route`'s model until one answers."""
        deployments = self.registry.deployments(route.entry)
        if len(deployments.routes) == 1:
            return await call_one(deployments.routes[0])
        order = self.order(deployments, tokens())
        return await _first_answer(order, call_one, self._open_for)


class DeploymentCircuits:
    """The router's view of circuits (`routing.router.CircuitView`) when models may have
    several deployments: a model is callable while any of its deployments' circuits is closed,
    whatever the catalog's provider for it says."""

    def __init__(self, picker: DeploymentPicker) -> None:
        self.picker = picker

    def open_for(self, provider: str, model: str | None = None) -> float:
        registry = self.picker.registry
        entry = registry.catalog.find(model) if model is not None else None
        if entry is not None and registry.is_available(entry):
            return self.picker.open_for(registry.route(entry))
        breakers = self.picker.breakers
        return breakers.open_for(provider, model) if breakers is not None else 0.0


async def _first_answer(
    order: Sequence[Route],
    call_one: Callable[[Route], Awaitable[R]],
    open_for: Callable[[Route], float],
) -> R:
    last: ProviderError | None = None
    soonest: float | None = None
    for route in order:
        wait = open_for(route)
        if wait > 0:
            soonest = wait if soonest is None else min(soonest, wait)
            continue
        try:
            return await call_one(route)
        except ProviderError as exc:
            if not falls_through(exc):
                raise
            last = exc
    if last is not None:
        raise last
    raise ProviderUnavailableError(
        f"No deployment of '{order[0].model}' is available: every circuit is open",
        code="all_circuits_open",
        retry_after=soonest,
        model=order[0].model,
    )
