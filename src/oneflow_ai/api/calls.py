"""The model endpoints' caller and the pipeline `Call` built for a request at the edge."""

from __future__ import annotations

from starlette.requests import HTTPConnection, Request

from oneflow_ai.api.call_log import CALL_STATE
from oneflow_ai.api.deps import authenticate
from oneflow_ai.api.fallbacks import FALLBACKS_HEADER, requested_fallbacks
from oneflow_ai.api.headers import header_values
from oneflow_ai.auth.permissions import Permission, ensure_permission
from oneflow_ai.auth.principal import Principal
from oneflow_ai.errors import BadRequestError
from oneflow_ai.gateway.call import CacheDirective, Call, Operation, Payload
from oneflow_ai.gateway.planning import resolve_strategy

__all__ = ["CACHE_TTL_HEADER", "STRATEGY_HEADER", "cache_directive", "gateway_caller", "new_call"]

STRATEGY_HEADER = "X-OneFlow-Strategy"
CACHE_TTL_HEADER = "X-OneFlow-Cache-TTL"
_STRATEGY = STRATEGY_HEADER.lower().encode()
_FALLBACKS = FALLBACKS_HEADER.lower().encode()
_CACHE_TTL = CACHE_TTL_HEADER.lower().encode()
#: The headers a call is made from (`new_call`), read in one pass.
_HEADERS = (_STRATEGY, _FALLBACKS, b"cache-control", _CACHE_TTL)
_DEFAULT_DIRECTIVE = CacheDirective()


async def gateway_caller(connection: HTTPConnection) -> Principal:
    """The caller of every model endpoint: the authenticated caller, provided its role grants
    `gateway` (403 otherwise). The same as `require(Permission.GATEWAY)`, in one dependency
    level instead of two: FastAPI's dependency solving is on the hot path (the chat endpoints,
    the hottest, call it directly instead of declaring it)."""
    principal = await authenticate(connection)
    ensure_permission(principal, Permission.GATEWAY)
    return principal


def new_call(
    request: Request,
    principal: Principal,
    operation: Operation,
    payload: Payload,
    *,
    model: str,
    strategy: str | None = None,
    strategy_field: str = STRATEGY_HEADER,
    stream: bool = False,
    fallbacks: tuple[str, ...] | None = None,
) -> Call:
    """A call for `model` (a concrete model, `auto` or a strategy name). The strategy comes
    from `strategy` (a body field named `strategy_field`) or else the `X-OneFlow-Strategy`
    header. The fallback models are the body's `models` (`fallbacks`, see `api/fallbacks.py`)
    or the `X-OneFlow-Fallbacks` header. The call is left in the request's state for the
    edge: its access line and its `X-RateLimit-*` headers."""
    strategy_header, fallbacks_header, control, ttl_text = header_values(request.scope, _HEADERS)
    if strategy is None:
        strategy, strategy_field = strategy_header, STRATEGY_HEADER
    requested = requested_fallbacks(fallbacks_header, fallbacks)
    state = request.scope.setdefault("state", {})
    state[CALL_STATE] = call = Call(
        request_id=state.get("request_id", ""),
        principal=principal,
        operation=operation,
        request=payload,
        model=model,
        strategy=resolve_strategy(model, strategy, header_name=strategy_field),
        stream=stream,
        cache_directive=cache_directive(control, ttl_text),
    )
    if requested is not None:
        call.requested_fallbacks, call.fallbacks_param = requested
    return call


def cache_directive(control: str | None, ttl_text: str | None) -> CacheDirective:
    """The caller's say over the response cache, from its `Cache-Control` header's value
    (`no-cache`: do not answer from the cache, `no-store`: nor keep the answer) and
    `X-OneFlow-Cache-TTL: <seconds>`."""
    if control is None and ttl_text is None:
        return _DEFAULT_DIRECTIVE
    tokens = {part.strip().lower() for part in (control or "").split(",")}
    no_store = "no-store" in tokens
    ttl: int | None = None
    if ttl_text is not None:
        try:
            ttl = int(ttl_text.strip())
        except ValueError:
            ttl = 0
        if ttl < 1:
            raise BadRequestError(
                f"{CACHE_TTL_HEADER} must be a whole number of seconds, at least 1",
                param=CACHE_TTL_HEADER,
            )
    return CacheDirective(
        read=not (no_store or "no-cache" in tokens), write=not no_store, ttl_seconds=ttl
    )
