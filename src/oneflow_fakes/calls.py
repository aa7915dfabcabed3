"""The call log: every request a fake provider received, so tests can assert on upstream
traffic ("exactly one call", "the idempotency key was forwarded", "the stream was cancelled").
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

__all__ = ["CallLog", "CallRecord"]

_SECRET_HEADERS = frozenset({"authorization", "x-api-key", "xi-api-key", "api-key"})


@dataclass(slots=True)
class CallRecord:
    """One request to a provider endpoint and what the fake did with it.

    `outcome` is `ok` (answered in full), `error` (an error status), `dropped` (connection cut
    by a fault), `stream_error` (an in-stream error event), `timeout` (hung by a fault until
    the client left) or `client_closed` (the client went away first); `pending` while it runs.
    """

    seq: int
    at: float
    provider: str
    endpoint: str
    method: str
    path: str
    model: str
    stream: bool
    raw_headers: Mapping[str, str] = field(repr=False)
    body: object
    request_id: str = ""
    status: int = 0
    outcome: str = "pending"
    chunks_sent: int = 0
    fault: dict[str, object] | None = None
    peer: tuple[str, int] | None = None  # the client's address: one per connection
    query: dict[str, str] = field(default_factory=dict)

    @property
    def headers(self) -> dict[str, str]:
        """The request's headers, names in lower case, credentials cut to their last four
        characters."""
        return redacted_headers(self.raw_headers.items())

    @property
    def idempotency_key(self) -> str | None:
        return self.headers.get("idempotency-key")

    @property
    def client_request_id(self) -> str | None:
        """The request id the caller sent (`x-request-id` or `request-id`)."""
        return self.headers.get("x-request-id") or self.headers.get("request-id")

    def to_json(self, *, with_body: bool = True) -> dict[str, object]:
        out: dict[str, object] = {
            "seq": self.seq,
            "at": self.at,
            "provider": self.provider,
            "endpoint": self.endpoint,
            "method": self.method,
            "path": self.path,
            "model": self.model,
            "stream": self.stream,
            "status": self.status,
            "outcome": self.outcome,
            "chunks_sent": self.chunks_sent,
            "request_id": self.request_id,
            "idempotency_key": self.idempotency_key,
            "client_request_id": self.client_request_id,
            "fault": self.fault,
            "headers": self.headers,
        }
        if with_body:
            out["body"] = self.body
        return out


def redacted_headers(headers: Iterable[tuple[str, str]]) -> dict[str, str]:
    """Headers with lower-case names; credentials keep only their last four characters."""
    out: dict[str, str] = {}
    for name, value in headers:
        key = name.lower()
        if key in _SECRET_HEADERS:
            value = f"***{value[-4:]}" if len(value) > 8 else "***"
        out[key] = value
    return out


@dataclass(slots=True)
class CallLog:
    """The last `size` calls, plus counts per provider and model that never roll over."""

    size: int = 10_000
    _records: deque[CallRecord] = field(init=False)
    _counts: dict[tuple[str, str], int] = field(init=False, default_factory=dict)
    _seq: int = field(init=False, default=0)
    _lock: threading.Lock = field(init=False, default_factory=threading.Lock)

    def __post_init__(self) -> None:
        self._records = deque(maxlen=self.size)

    def record(
        self,
        *,
        provider: str,
        endpoint: str,
        method: str,
        path: str,
        model: str,
        stream: bool,
        headers: Mapping[str, str],
        body: object,
    ) -> CallRecord:
        with self._lock:
            self._seq += 1
            record = CallRecord(
                seq=self._seq,
                at=time.time(),
                provider=provider,
                endpoint=endpoint,
                method=method,
                path=path,
                model=model,
                stream=stream,
                raw_headers=headers,
                body=body,
            )
            self._records.append(record)
            key = (provider, model)
            self._counts[key] = self._counts.get(key, 0) + 1
            return record

    def calls(
        self, provider: str | None = None, model: str | None = None, endpoint: str | None = None
    ) -> list[CallRecord]:
        with self._lock:
            records = list(self._records)
        return [
            r
            for r in records
            if (provider is None or r.provider == provider)
            and (model is None or r.model == model)
            and (endpoint is None or r.endpoint == endpoint)
        ]

    def count(self, provider: str | None = None, model: str | None = None) -> int:
        with self._lock:
            return sum(
                n
                for (p, m), n in self._counts.items()
                if (provider is None or p == provider) and (model is None or m == model)
            )

    def counts(self) -> dict[str, dict[str, int]]:
        """`{provider: {model: calls}}` since the last reset."""
        out: dict[str, dict[str, int]] = {}
        with self._lock:
            for (provider, model), n in self._counts.items():
                out.setdefault(provider, {})[model] = n
        return out

    def clear(self) -> None:
        with self._lock:
            self._records.clear()
            self._counts.clear()
