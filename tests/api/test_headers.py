"""A header read from the ASGI scope reads as Starlette's `Headers` reads it."""

from __future__ import annotations

from starlette.datastructures import Headers

from oneflow_ai.api.headers import header_value


def test_a_header_reads_as_starlette_reads_it() -> None:
    scope = {
        "headers": [
            (b"x-oneflow-strategy", b"cost_optimized"),
            (b"x-oneflow-fallbacks", b"gpt-4o, caf\xe9"),
            (b"x-oneflow-strategy", b"second"),
        ]
    }
    headers = Headers(scope=scope)
    for name in ("X-OneFlow-Strategy", "X-OneFlow-Fallbacks", "Cache-Control"):
        assert header_value(scope, name.lower().encode()) == headers.get(name)
    assert header_value(scope, b"x-oneflow-strategy") == "cost_optimized"  # the first
    assert header_value(scope, b"cache-control") is None
