"""Ordering a model's deployments: weights, least in flight, headroom and open circuits."""

from __future__ import annotations

from collections import Counter

from hypothesis import given
from hypothesis import strategies as st

from oneflow_ai.routing.balancer import DeploymentBalancer, DeploymentState


def states(*weights: int) -> list[DeploymentState]:
    return [DeploymentState(key=f"p{i}/m", weight=w) for i, w in enumerate(weights)]


def _with(state: DeploymentState, fields: dict[str, object]) -> DeploymentState:
    values = {name: getattr(state, name) for name in state.__slots__}
    values.update(fields)
    return DeploymentState(**values)


def firsts(
    balancer: DeploymentBalancer, deployments: list[DeploymentState], n: int
) -> Counter[int]:
    return Counter(balancer.order("m", deployments)[0] for _ in range(n))


def test_weights_are_followed_exactly_and_smoothly() -> None:
    balancer = DeploymentBalancer()
    deployments = states(3, 1)
    picks = [balancer.order("m", deployments)[0] for _ in range(1000)]
    assert Counter(picks) == {0: 750, 1: 250}
    # Smooth: never two calls in a row to the lighter one, never more than 3 to the heavier.
    assert all(picks[i : i + 4].count(1) == 1 for i in range(0, 1000, 4))


@given(st.lists(st.integers(min_value=1, max_value=20), min_size=2, max_size=5))
def test_any_weights_within_one_call_per_round(weights: list[int]) -> None:
    balancer = DeploymentBalancer()
    deployments = states(*weights)
    rounds = 7
    got = firsts(balancer, deployments, sum(weights) * rounds)
    assert {i: got[i] for i in range(len(weights))} == {
        i: w * rounds for i, w in enumerate(weights)
    }


def test_the_rest_follow_by_weight_then_short_then_open() -> None:
    deployments = states(1, 5, 2, 3, 4)
    deployments[3] = _with(deployments[3], {"short": True})
    deployments[4] = _with(deployments[4], {"open_for": 9.0})
    deployments[0] = _with(deployments[0], {"open_for": 3.0})
    order = DeploymentBalancer().order("m", deployments)
    assert order[2:] == [3, 0, 4]  # short, then open circuits soonest first
    assert sorted(order[:2]) == [1, 2] and order[0] == 1  # 5 beats 2 on the first pick


def test_a_standby_takes_calls_only_when_the_others_cannot() -> None:
    balancer = DeploymentBalancer()
    assert firsts(balancer, states(1, 0), 10) == {0: 10}
    blocked = states(1, 0)
    blocked[0] = _with(blocked[0], {"open_for": 5.0})
    assert firsts(balancer, blocked, 10) == {1: 10}


def test_least_in_flight_per_unit_of_weight() -> None:
    balancer = DeploymentBalancer()
    deployments = states(1, 1)
    deployments[0] = _with(deployments[0], {"in_flight": 2})
    deployments[1] = _with(deployments[1], {"in_flight": 1})
    assert firsts_of(balancer, deployments, "least_in_flight") == 1
    weighted = states(4, 1)
    weighted[0] = _with(weighted[0], {"in_flight": 3})  # 3/4 < 1/1
    weighted[1] = _with(weighted[1], {"in_flight": 1})
    assert firsts_of(balancer, weighted, "least_in_flight") == 0
    # Plain weighted balancing ignores what is in flight.
    assert firsts(DeploymentBalancer(), deployments, 4) == {0: 2, 1: 2}


def firsts_of(
    balancer: DeploymentBalancer, deployments: list[DeploymentState], balance: str
) -> int:
    return balancer.order("m", deployments, balance)[0]  # type: ignore[arg-type]
