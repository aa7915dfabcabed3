"""How a request log row looks on the wire (JSON) and in CSV."""

from __future__ import annotations

from typing import Any, Final

from oneflow_ai.domain.money import micro_credits_to_credits, micro_credits_to_usd
from oneflow_ai.storage.request_log import RequestRow

__all__ = ["CSV_COLUMNS", "csv_row", "request_view"]

#: The request log's CSV columns, in order (the JSON fields of the same names).
CSV_COLUMNS: Final = (
    "id",
    "time",
    "project_id",
    "user_id",
    "key_id",
    "model_requested",
    "model",
    "provider",
    "strategy",
    "route_reason",
    "fallbacks",
    "status",
    "error",
    "stream",
    "input_tokens",
    "cached_input_tokens",
    "cache_write_5m_tokens",
    "cache_write_1h_tokens",
    "output_tokens",
    "reasoning_tokens",
    "images",
    "characters",
    "credits",
    "usd",
    "latency_ms",
    "ttft_ms",
    "cache_hit",
    "audio_seconds",
)


def _time(row: RequestRow) -> str:
    return row.occurred_at.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def request_view(row: RequestRow, *, detail: bool = False) -> dict[str, Any]:
    view: dict[str, Any] = {
        "object": "request",
        "id": row.request_id,
        "time": _time(row),
        "project_id": row.project_id,
        "user_id": row.user_id,
        "key_id": row.key_id,
        "model_requested": row.model_requested,
        "model": row.model,
        "provider": row.provider,
        "strategy": row.strategy,
        "route_reason": row.route_reason,
        "fallbacks": row.fallbacks,
        "status": row.status,
        "error": row.error,
        "stream": row.stream,
        "input_tokens": row.input_tokens,
        "cached_input_tokens": row.cached_input_tokens,
        "cache_write_5m_tokens": row.cache_write_5m_tokens,
        "cache_write_1h_tokens": row.cache_write_1h_tokens,
        "output_tokens": row.output_tokens,
        "reasoning_tokens": row.reasoning_tokens,
        "images": row.images,
        "characters": row.characters,
        "credits": f"{micro_credits_to_credits(row.micro_credits):f}",
        "usd": f"{micro_credits_to_usd(row.micro_credits):f}",
        "latency_ms": row.latency_ms,
        "ttft_ms": row.ttft_ms,
        "cache_hit": row.cache_hit,
        "audio_seconds": row.audio_seconds,
    }
    if detail:
        view["price_table_version"] = row.price_table_version
        view["estimated"] = row.estimated
        view["route"] = _route(row)
    return view


def _route(row: RequestRow) -> dict[str, Any]:
    """The stored chain and attempts; a request that kept none (one model, answered at the
    first try) had its one attempt on the row's own model."""
    stored = row.route_detail or {}
    candidates = stored.get("candidates") or ([row.model] if row.model else [])
    attempts = stored.get("attempts")
    if attempts is None:
        attempts = []
        if row.model is not None and row.status < 400:
            attempts.append(
                {
                    "model": row.model,
                    "provider": row.provider,
                    "latency_ms": row.latency_ms,
                    "error": None,
                    "status": None,
                    "message": None,
                }
            )
    return {
        "model_requested": row.model_requested,
        "strategy": row.strategy,
        "reason": row.route_reason,
        "fallbacks": row.fallbacks,
        "candidates": candidates,
        "attempts": attempts,
    }


def csv_row(view: dict[str, Any]) -> list[str]:
    values = [view[name] for name in CSV_COLUMNS]
    return ["" if v is None else str(v).lower() if isinstance(v, bool) else str(v) for v in values]
