"""The local cluster under faults: three replicas (`oneflow serve`) behind HAProxy, on one
PostgreSQL and one Redis of the test's own, in front of the fake providers.

A steady load (16 requests a second: projects A and B, half of them streamed, in both
dialects; one of A's keys rate-limited) runs while, one after another: each replica in turn
gets SIGTERM and is started again (a rolling update), one is killed with SIGKILL while streams
run through it, PostgreSQL is stopped for 20 s, Redis for 10 s, and a hard budget is set on
project B. Afterwards (tests/support/cluster_checks.py says each check exactly):

- no request is left without an answer, and no 5xx comes but a 503 with Retry-After during
  an outage, or the load balancer's 502 for a request on the replica killed under it;
- every answered request is charged exactly once, exactly what its answer announced; an
  interrupted one is charged once, for its prompt at least; the ledger's total is the sum of
  the answers' credits and those charges, and what `/api/v1/usage` reports;
- the ledger's invariants hold and no reservation is left;
- the rate-limited key: every remaining count handed out once, never more than the limit,
  nothing admitted without a decision outside the Redis outage;
- nothing is charged past the hard budget once it is set.

It prints a table: scenario, load, faults, requests, errors by kind, credits charged vs the
answers' credits. `CLUSTER_TEST_ENV="NAME=VALUE ..."` passes more gateway settings (those of
a branch under test); `python scripts/cluster.py prove` runs the same scenario by hand.
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest

from tests.support.cluster import local_cluster
from tests.support.cluster_scenario import Scenario, prove

pytestmark = [pytest.mark.cluster, pytest.mark.slow, pytest.mark.timeout(1500)]


def _extra_env() -> dict[str, str]:
    pairs = os.environ.get("CLUSTER_TEST_ENV", "").split()
    return dict(pair.split("=", 1) for pair in pairs)


def test_three_replicas_under_faults_lose_nothing_and_overspend_nothing(tmp_path: Path) -> None:
    scenario = Scenario()
    with local_cluster(tmp_path, scenario.cluster_config(_extra_env())) as cluster:
        report = asyncio.run(prove(cluster, scenario))
    print(f"\n{report.table}")
    if report.problems:
        pytest.fail("\n".join([report.table, *report.problems]), pytrace=False)
