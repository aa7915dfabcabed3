"""Liveness and readiness probes."""

from __future__ import annotations

import asyncio

from fastapi import APIRouter, Request
from sqlalchemy.ext.asyncio import AsyncEngine
from starlette.responses import Response

from oneflow_ai import __version__
from oneflow_ai.api.deps import get_services
from oneflow_ai.api.responses import json_response
from oneflow_ai.billing.ledger import Ledger
from oneflow_ai.storage.database import ping
from oneflow_ai.storage.schema import SchemaWatch

__all__ = ["router"]

router = APIRouter(tags=["health"])

_CHECK_TIMEOUT = 2.0


@router.get("/health", summary="Liveness: the process serves requests (no I/O)")
async def health() -> Response:
    return json_response({"status": "ok", "version": __version__})


@router.get(
    "/ready",
    summary="Readiness: the database (at the code's schema) and Redis (when configured) answer",
    responses={
        503: {"description": "Not ready (draining, schema, or no database yet); the body says"}
    },
)
async def ready(request: Request) -> Response:
    services = get_services(request)
    graceful = getattr(request.app.state, "graceful", None)
    if graceful is not None and graceful.draining:  # stopping: take this replica out
        return json_response({"status": "draining"}, status_code=503)
    checks: dict[str, dict[str, object]] = {}
    checks["database"] = await _database(services.engine, services.ledger)
    if checks["database"]["status"] == "ok":
        checks["schema"] = await _schema(services.schema)

    if services.redis is not None:
        try:
            await asyncio.wait_for(services.redis.ping(), _CHECK_TIMEOUT)
            checks["redis"] = {"status": "ok"}
        except Exception as exc:
            checks["redis"] = {"status": "failed", "error": _reason(exc)}

    # A shared dependency going away is every replica's outage: taking them all out of the
    # load balancer would turn it into a total one, answered without Retry-After. A replica
    # that has loaded its ledger keeps serving (postpaid requests, settlements into its spool,
    # fast 503s with Retry-After for what needs a hold) and stays ready, reporting it; so does
    # one without Redis (its limits decide locally).
    tolerated = {"redis"} | ({"database"} if services.ledger.ready else set())
    failing = sorted(name for name, check in checks.items() if check["status"] != "ok")
    failed = [name for name in failing if name not in tolerated]
    degraded = [name for name in failing if name in tolerated]
    # What the ledger holds in its spool for the database (replayed when it answers):
    # reported, never a reason to be unready by itself.
    checks["ledger_spool"] = _spool_check(services.ledger)
    status = "not_ready" if failed else "degraded" if degraded else "ready"
    body: dict[str, object] = {"status": status, "checks": checks}
    # Open circuits are reported, never a reason to be unready: every replica shares them,
    # and taking replicas out would not bring a provider back.
    circuits = services.breakers.snapshots()
    body["circuits"] = {
        state: sorted(s.key for s in circuits if s.state.value == state)
        for state in ("open", "half_open")
    }
    # A declared provider that cannot be reached is a warning: the gateway serves its other
    # models, and that provider's calls fail over until it answers.
    if services.reachability is not None and services.reachability.providers:
        reachability = await services.reachability.check()
        body["providers"] = {
            r.provider: {"status": "ok"}
            if r.reachable
            else {"status": "unreachable", "address": r.address, "error": r.error}
            for r in reachability
        }
        warnings = [
            f"provider {r.provider} ({r.address}) is unreachable: {r.error}"
            for r in reachability
            if not r.reachable
        ]
        if warnings:
            body["warnings"] = warnings
    if failed:
        body["failed"] = failed
    if degraded:
        body["degraded"] = degraded
    return json_response(body, status_code=503 if failed else 200)


async def _database(engine: AsyncEngine, ledger: Ledger) -> dict[str, object]:
    """One round trip, unless the database is known to be away (its health flag)."""
    health = ledger.health
    if health is not None and health.down:
        known = health.status()
        return {
            "status": "failed",
            "error": f"unreachable: {health.last_error}",
            "down_seconds": known["down_seconds"],
        }
    try:
        await asyncio.wait_for(ping(engine), _CHECK_TIMEOUT)
    except Exception as exc:  # the reason is reported
        return {"status": "failed", "error": _reason(exc)}
    return {"status": "ok"}


async def _schema(watch: SchemaWatch) -> dict[str, object]:
    """The schema at the code's head, or why not (`schema behind: run oneflow db upgrade`)."""
    try:
        status = await asyncio.wait_for(watch.status(), _CHECK_TIMEOUT)
    except Exception as exc:
        return {"status": "failed", "error": _reason(exc)}
    if status.current:
        return {"status": "ok", "revision": status.head}
    return {
        "status": "failed",
        "error": status.reason,
        "revision": status.revision or "none",
        "head": status.head,
    }


def _spool_check(ledger: Ledger) -> dict[str, object]:
    spool = ledger.spool
    backlog = spool.pending if spool is not None else 0
    check: dict[str, object] = {"status": "backlog" if backlog else "ok", "backlog": backlog}
    if ledger.health is not None and ledger.health.down:
        check["database"] = ledger.health.status()
    return check


def _reason(exc: BaseException) -> str:
    if isinstance(exc, TimeoutError):
        return f"no answer within {_CHECK_TIMEOUT:g} s"
    text = str(exc).splitlines()[0] if str(exc) else ""
    return f"{type(exc).__name__}: {text}"[:300]
