import dataclasses

from oneflow_ai.errors import ProviderError
from oneflow_ai.providers.upstream import UpstreamRequest


def _map(status: int, headers: object, body: bytes) -> ProviderError:
    return ProviderError("failed")


def test_with_headers_replaces_only_the_headers() -> None:
    """Every other field is kept: a field added to the request and forgotten there fails."""
    values = {
        "method": "POST",
        "path": "/chat/completions",
        "map_error": _map,
        "body": b"{}",
        "headers": {"X-One": "1"},
        "query": {"api-version": "2024-06-01"},
        "model": "gpt-4o",
        "read_timeout": 3.0,
        "total_timeout": 9.0,
    }
    assert set(values) == {f.name for f in dataclasses.fields(UpstreamRequest)}
    request = UpstreamRequest(**values)  # type: ignore[arg-type]
    replaced = request.with_headers({"Idempotency-Key": "k"})
    assert replaced == dataclasses.replace(request, headers={"Idempotency-Key": "k"})
    assert request.headers == {"X-One": "1"}
