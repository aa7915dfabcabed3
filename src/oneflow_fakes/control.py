"""The control plane (`/_fake/...`): install faults, read the call log, reset.

It exists because a gateway in front of the fakes does not forward `x-fake-*` headers:
tests and benchmarks steer the upstream through it instead.
"""

from __future__ import annotations

import orjson
from aiohttp import web
from pydantic import ValidationError

from oneflow_fakes.exchange import FakeState

__all__ = ["ControlPlane", "base_urls"]

PREFIXES = {
    "openai": "/openai/v1",
    "anthropic": "/anthropic",
    "stability": "/stability",
    "elevenlabs": "/elevenlabs",
}


def base_urls(root: str) -> dict[str, str]:
    """Each provider's base URL in its official SDK's convention (OpenAI's ends in /v1)."""
    return {provider: root + prefix for provider, prefix in PREFIXES.items()}


def _json(data: object, status: int = 200) -> web.Response:
    return web.Response(status=status, body=orjson.dumps(data), content_type="application/json")


class ControlPlane:
    def __init__(self, state: FakeState) -> None:
        self.state = state

    def add_routes(self, router: web.UrlDispatcher) -> None:
        router.add_get("/_fake", self.info)
        router.add_get("/_fake/faults", self.list_faults)
        router.add_post("/_fake/faults", self.add_faults)
        router.add_delete("/_fake/faults", self.clear_faults)
        router.add_delete("/_fake/faults/{rule_id}", self.remove_fault)
        router.add_get("/_fake/calls", self.list_calls)
        router.add_delete("/_fake/calls", self.clear_calls)
        router.add_post("/_fake/reset", self.reset)

    async def info(self, request: web.Request) -> web.Response:
        config = self.state.config
        root = f"{request.scheme}://{request.host}"
        return _json(
            {
                "base_urls": base_urls(root),
                "config": {
                    "api_key": "any" if config.api_key is None else "fixed",
                    "latency_ms": config.latency_ms,
                    "ttft_ms": config.ttft_ms,
                    "chunk_delay_ms": config.chunk_delay_ms,
                    "reply_words": config.reply_words,
                    "hang_seconds": config.hang_seconds,
                    "any_model": config.any_model,
                },
            }
        )

    async def list_faults(self, request: web.Request) -> web.Response:
        return _json({"rules": self.state.faults.rules()})

    async def add_faults(self, request: web.Request) -> web.Response:
        try:
            payload = orjson.loads(await request.read())
        except orjson.JSONDecodeError as exc:
            return _json({"error": f"invalid JSON: {exc}"}, 400)
        try:
            ids = self.state.faults.add_json(payload)
        except ValidationError as exc:
            return _json({"error": str(exc)}, 400)
        rules = [rule for rule in self.state.faults.rules() if rule["id"] in ids]
        return _json({"ids": ids, "rules": rules}, 201)

    async def clear_faults(self, request: web.Request) -> web.Response:
        self.state.faults.clear()
        return _json({"rules": []})

    async def remove_fault(self, request: web.Request) -> web.Response:
        rule_id = request.match_info["rule_id"]
        if not self.state.faults.remove(rule_id):
            return _json({"error": f"no fault rule {rule_id!r}"}, 404)
        return _json({"deleted": rule_id})

    async def list_calls(self, request: web.Request) -> web.Response:
        query = request.query
        calls = self.state.calls.calls(
            provider=query.get("provider"), model=query.get("model"), endpoint=query.get("endpoint")
        )
        try:
            limit = int(query.get("limit", "0"))
        except ValueError:
            return _json({"error": "limit must be an integer"}, 400)
        if limit > 0:
            calls = calls[-limit:]
        with_body = query.get("body", "1") not in ("0", "false", "no")
        return _json(
            {
                "total": self.state.calls.count(query.get("provider"), query.get("model")),
                "counts": self.state.calls.counts(),
                "calls": [call.to_json(with_body=with_body) for call in calls],
            }
        )

    async def clear_calls(self, request: web.Request) -> web.Response:
        self.state.calls.clear()
        return _json({"total": 0})

    async def reset(self, request: web.Request) -> web.Response:
        self.state.reset()
        return _json({"rules": [], "total": 0})
