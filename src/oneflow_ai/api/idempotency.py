"""`Idempotency-Key` on the gateway's POST endpoints: one pure-ASGI layer.

A POST carrying ``Idempotency-Key: <1-255 visible ASCII characters>`` from an authenticated
caller runs at most once per (caller, key) while the key lives (``IDEMPOTENCY_TTL_SECONDS``,
24 h by default):

- the first request runs; its answer (status, headers, body; for an SSE stream every event
  byte, up to ``IDEMPOTENCY_MAX_RESPONSE_BYTES``) is stored as it ends, before its last bytes
  are sent, so a client that saw it whole can count on repeats being replayed;
- a repeat that arrives while it runs waits for it (up to ``IDEMPOTENCY_WAIT_SECONDS``) and
  then gets its answer; with ``Idempotency-Wait: false`` it gets ``409`` at once instead, and
  ``409`` too when the wait runs out;
- a later repeat gets the stored answer, byte for byte, with ``Idempotent-Replayed: true``;
- the same key with a different request (method, path, query or body) is ``422``;
- an answer that says nothing was done is not stored: the key is released and a repeat runs
  afresh. That is every refusal whose cause can go away: 401 and 403 (credentials, roles), 402
  (credits or a credits budget: a top-up makes a retry succeed), 408, 409, 413 (a size limit),
  425, 429 (rate limits, quotas) and every 5xx (the upstream failed, nothing was billed). A
  request the client abandoned before its answer ended is not stored either. Kept and
  replayed: 2xx, and the refusals of the request itself (400, 404, 422, ...), which a repeat
  would get again.
  The table is in docs/routing.md ("Idempotency").
- an answer larger than the store keeps is remembered as done but not replayable: repeats get
  ``409`` rather than a second execution.

Keys are scoped to the caller (project and key or user), so two tenants never share one.
Requests without the header, other methods, and unauthenticated requests pass straight
through (the route then answers 401 as usual).

Why a middleware rather than a step of the pipeline: it covers every POST endpoint (chat in
both dialects, images, speech, the seed's ``/api/v1/request``) the same way, stores exactly the
bytes the client received (streams included) without each endpoint's cooperation, and a
duplicate never reaches routing, reservation or the upstream, so it is billed once. It costs
nothing on requests without the header.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import re
from collections.abc import Awaitable, Callable

import structlog
from starlette.requests import HTTPConnection
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from oneflow_ai.api.deps import authenticate
from oneflow_ai.api.errors import dialect_for_path, error_response
from oneflow_ai.errors import (
    BadRequestError,
    ConflictError,
    GatewayError,
    ServiceUnavailableError,
    UnprocessableError,
)
from oneflow_ai.resilience.idempotency import (
    Claimed,
    Done,
    IdempotencyStore,
    InFlight,
    Mismatch,
    StoredResponse,
)
from oneflow_ai.storage.redis_errors import unreachable
from oneflow_ai.tasks import stop

__all__ = ["IdempotencyMiddleware", "caller_scope"]

log = structlog.get_logger("oneflow.idempotency")

_KEY_OK = re.compile(rb"^[\x21-\x7e]{1,255}$")
_NO_WAIT = frozenset({b"false", b"0", b"no"})
#: Refusals that mean nothing was done and may not hold on a retry (see the module docstring).
_NOT_STORED = frozenset({401, 402, 403, 408, 409, 413, 425, 429})
_REPLAYED = (b"idempotent-replayed", b"true")

CallerResolver = Callable[[HTTPConnection], Awaitable[str | None]]


async def caller_scope(connection: HTTPConnection) -> str | None:
    """The caller's idempotency scope (``project:subject``), or ``None`` if unauthenticated."""
    try:
        principal = await authenticate(connection)
    except GatewayError:
        return None
    return f"{principal.project_id}:{principal.subject}"


class IdempotencyMiddleware:
    """See the module docstring. The store comes from ``app.state.services.idempotency``."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        max_response_bytes: int = 4 * 1024 * 1024,
        wait_seconds: float = 60.0,
        resolve_caller: CallerResolver = caller_scope,
        store: IdempotencyStore | None = None,
    ) -> None:
        self.app = app
        self.max_response_bytes = max_response_bytes
        self.wait_seconds = wait_seconds
        self._resolve_caller = resolve_caller
        self._store = store

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "POST":
            await self.app(scope, receive, send)
            return
        raw_key = wait = None
        for name, value in scope["headers"]:
            if name == b"idempotency-key":
                raw_key = value
            elif name == b"idempotency-wait":
                wait = value
        if raw_key is None:  # most requests: nothing more to look up
            await self.app(scope, receive, send)
            return
        store = self._store if self._store is not None else _store_of(scope)
        if store is None:
            await self.app(scope, receive, send)
            return
        try:
            await self._keyed(scope, receive, send, store, raw_key, wait)
        except GatewayError as error:
            response = error_response(error, dialect_for_path(scope["path"]))
            await response(scope, receive, send)

    async def _keyed(
        self,
        scope: Scope,
        receive: Receive,
        send: Send,
        store: IdempotencyStore,
        raw_key: bytes,
        wait: bytes | None,
    ) -> None:
        if not _KEY_OK.match(raw_key):
            raise BadRequestError(
                "Idempotency-Key must be 1 to 255 visible ASCII characters",
                param="Idempotency-Key",
                code="invalid_idempotency_key",
            )
        caller = await self._resolve_caller(HTTPConnection(scope))
        if caller is None:
            await self.app(scope, receive, send)
            return
        body, disconnected = await _read_body(receive)
        if disconnected:
            return
        key = f"{caller}:{hashlib.sha256(raw_key).hexdigest()}"
        fingerprint = _fingerprint(scope, caller, body)
        try:
            result = await store.begin(key, fingerprint)
            if isinstance(result, InFlight) and (wait or b"").strip().lower() not in _NO_WAIT:
                result = await store.wait(key, fingerprint, self.wait_seconds)
        except unreachable() as exc:
            log.warning("idempotency_store_failed", error=repr(exc))
            raise ServiceUnavailableError(
                "The idempotency store is unavailable; retry shortly", retry_after=1
            ) from exc
        if isinstance(result, Claimed):
            await self._run(scope, body, receive, send, store, key, result)
        elif isinstance(result, Done):
            await _replay(send, result.response)
        elif isinstance(result, Mismatch):
            raise UnprocessableError(
                "This Idempotency-Key was already used with a different request "
                "(method, path or body)",
                param="Idempotency-Key",
                code="idempotency_key_reused",
            )
        else:
            raise ConflictError(
                "A request with this Idempotency-Key is still being processed",
                param="Idempotency-Key",
                code="idempotency_request_in_progress",
                retry_after=1,
            )

    async def _run(
        self,
        scope: Scope,
        body: bytes,
        receive: Receive,
        send: Send,
        store: IdempotencyStore,
        key: str,
        claim: Claimed,
    ) -> None:
        status = 0
        headers: list[tuple[bytes, bytes]] = []
        parts: list[bytes] = []
        size = 0
        oversized = False
        completed = False
        body_sent = False

        async def replay_body() -> Message:
            nonlocal body_sent
            if not body_sent:
                body_sent = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()  # after the body: wait for the client to go away

        async def capture(message: Message) -> None:
            nonlocal status, headers, size, oversized, completed
            if message["type"] == "http.response.start":
                status = message["status"]
                headers = list(message.get("headers", ()))
            elif message["type"] == "http.response.body":
                chunk = message.get("body", b"")
                if not oversized:
                    size += len(chunk)
                    if size > self.max_response_bytes:
                        oversized = True
                        parts.clear()
                    else:
                        parts.append(chunk)
                if not message.get("more_body", False) and _storable(status):
                    # Stored before its last bytes leave: a client that saw the answer whole
                    # can count on a repeat being replayed, even if this process dies next.
                    answer = _answer(status, headers, parts, oversized=oversized)
                    with contextlib.suppress(Exception):
                        await asyncio.shield(store.complete(key, claim, answer))
                        completed = True
            await send(message)

        renewal = asyncio.get_running_loop().create_task(_renew(store, key, claim))
        try:
            await self.app(scope, replay_body, capture)
        finally:
            await stop(renewal)
            if not completed:
                with contextlib.suppress(Exception):
                    await asyncio.shield(store.release(key, claim))


def _answer(
    status: int, headers: list[tuple[bytes, bytes]], parts: list[bytes], *, oversized: bool
) -> StoredResponse:
    """The answer to store, from what was captured (its body only if it fit)."""
    return StoredResponse(
        status=status, headers=tuple(headers), body=b"".join(parts), replayable=not oversized
    )


def _storable(status: int) -> bool:
    """An answer that says something happened (or was refused for good) is kept."""
    return 200 <= status < 500 and status not in _NOT_STORED


async def _replay(send: Send, stored: StoredResponse) -> None:
    if not stored.replayable:
        raise ConflictError(
            "A request with this Idempotency-Key already ran, and its answer was too large "
            "to keep for replay",
            param="Idempotency-Key",
            code="idempotent_response_not_stored",
        )
    headers = [*stored.headers, _REPLAYED]
    await send({"type": "http.response.start", "status": stored.status, "headers": headers})
    await send({"type": "http.response.body", "body": stored.body})


def _store_of(scope: Scope) -> IdempotencyStore | None:
    app = scope.get("app")
    services = getattr(getattr(app, "state", None), "services", None)
    store: IdempotencyStore | None = getattr(services, "idempotency", None)
    return store


async def _read_body(receive: Receive) -> tuple[bytes, bool]:
    parts: list[bytes] = []
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return b"", True
        parts.append(message.get("body", b""))
        if not message.get("more_body", False):
            return b"".join(parts), False


def _fingerprint(scope: Scope, caller: str, body: bytes) -> str:
    digest = hashlib.sha256()
    for part in (scope["method"].encode(), scope["path"].encode(), scope.get("query_string", b"")):
        digest.update(part)
        digest.update(b"\0")
    digest.update(caller.encode())
    digest.update(b"\0")
    digest.update(body)
    return digest.hexdigest()


async def _renew(store: IdempotencyStore, key: str, claim: Claimed) -> None:
    """Keep a running request's lease alive (every third of the lease)."""
    while True:
        await asyncio.sleep(store.lock_seconds / 3)
        try:
            await store.renew(key, claim)
        except Exception as exc:  # a missed renewal only shortens the lease
            log.warning("idempotency_renew_failed", error=repr(exc))
