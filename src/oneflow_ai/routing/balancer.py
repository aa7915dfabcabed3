"""Which deployment of a model a call goes to first, and which ones after it.

A model may be served by several deployments (two keys or organisations, Azure regions, a
mirror: the catalog's `routing:` section). `DeploymentBalancer.order` ranks them for one call
from what the gateway knows of each (`DeploymentState`), pure and without I/O:

1. deployments that can take the call: circuit closed, rate-limit headroom left;
2. then those whose provider said they are about to refuse (tried only if the first fail);
3. then those whose circuit is open (the caller skips them: listed so it knows they exist).

Among the first group, `weighted` balancing picks by smooth weighted round robin (nginx's:
each pick adds every weight to its deployment's credit, takes the largest credit, and takes
the total off it), so any window of calls follows the weights as closely as whole calls can
(3:1 is exactly 750 and 250 in 1,000 calls) and never bunches; `least_in_flight` picks among
the deployments with the fewest calls in flight per unit of weight, the same round robin
breaking ties. A weight of 0 is a standby: picked only when no weighted deployment can take the
call. After the pick, the rest follow by weight. The round robin's credits are this process's.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass

from oneflow_ai.catalog import Balance

__all__ = ["DeploymentBalancer", "DeploymentState"]


@dataclass(frozen=True, slots=True)
class DeploymentState:
    """What is known of one deployment when a call is placed."""

    key: str  # `provider/model`
    weight: int
    in_flight: int = 0
    open_for: float = 0.0  # seconds until its circuit lets calls through (0: closed)
    short: bool = False  # its provider reported too little headroom for this call


class DeploymentBalancer:
    """Orders deployments for a call (module docstring); one per process."""

    def __init__(self) -> None:
        self._credits: dict[str, dict[str, int]] = {}  # by model, then deployment key
        self._lock = threading.Lock()

    def order(
        self, model: str, deployments: Sequence[DeploymentState], balance: Balance = "weighted"
    ) -> list[int]:
        """Indexes into `deployments`, the one to call first first."""
        ready = [i for i, d in enumerate(deployments) if d.open_for <= 0 and not d.short]
        short = [i for i, d in enumerate(deployments) if d.open_for <= 0 and d.short]
        blocked = sorted(
            (i for i, d in enumerate(deployments) if d.open_for > 0),
            key=lambda i: deployments[i].open_for,
        )
        ranked: list[int] = []
        if ready:
            first = self._pick(model, deployments, ready, balance)
            rest = [i for i in ready if i != first]
            ranked = [first, *self._by_weight(deployments, rest)]
        return [*ranked, *self._by_weight(deployments, short), *blocked]

    def _pick(
        self,
        model: str,
        deployments: Sequence[DeploymentState],
        ready: list[int],
        balance: Balance,
    ) -> int:
        weighted = [i for i in ready if deployments[i].weight > 0]
        pool = weighted or ready  # only standbys left: they share the calls
        weights = {i: deployments[i].weight or 1 for i in pool}
        if balance == "least_in_flight":
            least = min(deployments[i].in_flight / weights[i] for i in pool)
            pool = [i for i in pool if deployments[i].in_flight / weights[i] == least]
        if len(pool) == 1:
            return pool[0]
        with self._lock:
            credits = self._credits.setdefault(model, {})
            total = 0
            best = pool[0]
            for i in pool:
                key = deployments[i].key
                credits[key] = credits.get(key, 0) + weights[i]
                total += weights[i]
                if credits[key] > credits[deployments[best].key]:
                    best = i
            credits[deployments[best].key] -= total
        return best

    @staticmethod
    def _by_weight(deployments: Sequence[DeploymentState], indexes: list[int]) -> list[int]:
        return sorted(indexes, key=lambda i: -deployments[i].weight)
