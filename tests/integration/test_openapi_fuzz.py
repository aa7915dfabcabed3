"""schemathesis against a live gateway: a process of its own (`run_gateway.py`) on a PostgreSQL
database of its own, with the built-in fake providers, called with the master key.

- every operation of the OpenAPI document with generated requests, valid and not;
- then stateful sequences that follow the document's links (a project, key or user created,
  then read, changed, topped up, rotated, revoked ...).

Every answer must be what the document says: no server error (5xx), a documented status code
and content type, a body of the documented shape. The run is bounded: `EXAMPLES` per
operation, `SCENARIOS` sequences of at most `STEPS` calls (about a minute and a half on a
2-core machine), no per-example deadline (the machine is shared; time is not what is tested).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import hypothesis
import pytest
import schemathesis
from schemathesis.checks import not_a_server_error
from schemathesis.core.failures import FailureGroup
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from oneflow_ai.storage import migrate
from oneflow_ai.storage.database import create_engine
from tests.support.databases import empty_pg_database
from tests.support.gateway_process import GatewayProcess

pytestmark = [pytest.mark.postgres, pytest.mark.timeout(900)]

MASTER = "sk-master-for-openapi-fuzzing-0123456789"
ADMIN = {"Authorization": f"Bearer {MASTER}"}
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]
EXAMPLES = 12
SCENARIOS = 40
STEPS = 6


@pytest.fixture(scope="module")
async def gateway(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[GatewayProcess]:
    async with empty_pg_database() as url:
        engine = create_engine(url, pool_size=1)
        try:
            await migrate.upgrade(engine)
        finally:
            await engine.dispose()
        env = {
            "DATABASE_URL": url,
            "ONEFLOW_MASTER_KEY": MASTER,
            "FAKE_PROVIDERS": "on",
            "LOG_LEVEL": "WARNING",
            "RATE_LIMIT_PER_MINUTE": "0",
            "RATE_LIMIT_PER_HOUR": "0",
            "LOGIN_ATTEMPTS_PER_MINUTE": "0",
        }
        log = Path(tmp_path_factory.mktemp("openapi-fuzz")) / "gateway.log"
        process = await asyncio.to_thread(GatewayProcess, env, log)
        try:
            yield process
        finally:
            await asyncio.to_thread(process.stop)
            errors = [line for line in log.read_text().splitlines() if "unhandled_error" in line]
            assert not errors, errors[:3]


@pytest.fixture(scope="module")
def api_schema(gateway: GatewayProcess) -> Any:
    return schemathesis.openapi.from_url(f"{gateway.url}/openapi.json")


def test_every_operation_answers_as_documented(api_schema: Any) -> None:
    """Each operation on its own: generated requests, the answer checked; every operation's
    first failure (shrunk to its simplest request) reported together."""
    failures: dict[str, str] = {}
    for result in api_schema.get_all_operations():
        operation = result.ok()

        @hypothesis.given(case=operation.as_strategy())
        @hypothesis.settings(
            max_examples=EXAMPLES,
            deadline=None,
            suppress_health_check=list(hypothesis.HealthCheck),
            derandomize=True,
            database=None,
        )
        def call(case: Any) -> None:
            case.call_and_validate(headers=ADMIN, checks=CHECKS)

        try:
            call()
        except Exception as exc:  # a check failed: kept, and the next operation tried
            failures[operation.label] = str(exc)[:2000]
    assert not failures, "\n\n".join(f"{label}: {text}" for label, text in failures.items())


def test_linked_operations_answer_as_documented(api_schema: Any) -> None:
    """Sequences along the links: a created project, key or user used by the next calls.

    Failures are recorded as they happen rather than raised, as schemathesis's own runner
    does: a sequence depends on what the live gateway stored before, so Hypothesis cannot
    replay it to shrink it (it would report the replay as flaky, hiding the failure)."""
    assert _links(api_schema.raw_schema) >= 13  # projects 8, keys 3, users 2
    failures: dict[str, str] = {}
    linked_answers: list[str] = []

    class Workflow(api_schema.as_state_machine()):  # type: ignore[misc]
        def get_call_kwargs(self, case: Any) -> dict[str, Any]:
            return {"headers": ADMIN}

        def validate_response(self, response: Any, case: Any, *args: Any, **kwargs: Any) -> None:
            if "{" in case.operation.path and response.status_code < 300:
                linked_answers.append(case.operation.label)
            try:
                case.validate_response(response, checks=CHECKS, headers=ADMIN)
            except FailureGroup as exc:
                failures.setdefault(case.operation.label, str(exc)[:2000])

    # A replay that met other server state is reported as flaky: see above.
    with contextlib.suppress(hypothesis.errors.Flaky):
        Workflow.run(
            settings=hypothesis.settings(
                max_examples=SCENARIOS,
                stateful_step_count=STEPS,
                deadline=None,
                phases=[hypothesis.Phase.generate],
                suppress_health_check=list(hypothesis.HealthCheck),
                database=None,
            )
        )
    assert not failures, "\n\n".join(f"{label}: {text}" for label, text in failures.items())
    # The sequences did reach created objects through the links (not only 404s).
    assert linked_answers, "no linked operation ever answered 2xx"


def _links(document: dict[str, Any]) -> int:
    return sum(
        len(response.get("links", {}))
        for item in document["paths"].values()
        for operation in item.values()
        for response in operation.get("responses", {}).values()
    )
