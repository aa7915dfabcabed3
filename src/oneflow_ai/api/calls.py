"""Building the pipeline's `Call` for a request at the edge."""

from __future__ import annotations

from starlette.requests import Request

from oneflow_ai.auth.principal import Principal
from oneflow_ai.domain.chat import ChatRequest
from oneflow_ai.domain.media import ImageRequest, SpeechRequest
from oneflow_ai.gateway.call import Call, Operation
from oneflow_ai.gateway.planning import resolve_strategy

__all__ = ["STRATEGY_HEADER", "new_call"]

STRATEGY_HEADER = "X-OneFlow-Strategy"


def new_call(
    request: Request,
    principal: Principal,
    operation: Operation,
    payload: ChatRequest | ImageRequest | SpeechRequest,
    *,
    model: str,
    strategy: str | None = None,
    strategy_field: str = STRATEGY_HEADER,
    stream: bool = False,
) -> Call:
    """A call for `model` (a concrete model, `auto` or a strategy name). The strategy comes
    from `strategy` (a body field named `strategy_field`) or else the `X-OneFlow-Strategy`
    header. The call's state is the request's, so hooks can leave response headers for the
    edge middleware."""
    if strategy is None:
        strategy, strategy_field = request.headers.get(STRATEGY_HEADER), STRATEGY_HEADER
    state = request.scope.setdefault("state", {})
    return Call(
        request_id=state.get("request_id", ""),
        principal=principal,
        operation=operation,
        request=payload,
        model=model,
        strategy=resolve_strategy(model, strategy, header_name=strategy_field),
        stream=stream,
        state=state,
    )
