"""One request through a fake provider: recorded, delayed, faulted, answered.

Every provider handler follows the same steps: parse the body, open an `Exchange` (which
records the call and works out the request's fault), `await exchange.interfere()` (latency,
timeouts, dropped connections, injected error statuses), check credentials and the request,
then answer with `json()`, `binary()` or `open_stream()`.
"""

from __future__ import annotations

import asyncio
import binascii
import functools
import os
import time
from collections.abc import Callable
from dataclasses import dataclass

import orjson
from aiohttp import web

from oneflow_fakes.calls import CallLog, CallRecord
from oneflow_fakes.config import FakeConfig
from oneflow_fakes.errors import ErrorAnswer
from oneflow_fakes.faults import Fault, FaultBook, FaultError, fault_from_headers

__all__ = [
    "Dropped",
    "ErrorFactory",
    "Exchange",
    "FakeState",
    "JsonBody",
    "Stream",
    "StreamFailed",
    "now",
    "random_id",
    "read_json",
    "sse",
]


_B64_TO_62 = bytes.maketrans(b"+/", b"xQ")


def random_id(prefix: str, size: int) -> str:
    """`prefix` + `size` random letters and digits, like the providers' ids."""
    raw = binascii.b2a_base64(os.urandom(size), newline=False).translate(_B64_TO_62, b"=")
    return prefix + raw[:size].decode()


class FakeState:
    """Everything one fake server instance owns (several can run in one process)."""

    def __init__(self, config: FakeConfig) -> None:
        self.config = config
        self.faults = FaultBook()
        self.calls = CallLog(size=config.call_log_size)
        # Prompts and answer chunks repeat (benchmarks send one prompt many times).
        self.count_tokens = functools.lru_cache(maxsize=16_384)(config.count_tokens)
        self.defaults = Fault(
            latency_ms=config.latency_ms or None,
            ttft_ms=config.ttft_ms or None,
            chunk_delay_ms=config.chunk_delay_ms or None,
        )
        self.openai_requests = 0  # chat requests answered since the last reset

    def openai_remaining(self) -> int | None:
        """Chat requests OpenAI's endpoint still answers (None: no limit configured)."""
        limit = self.config.openai_request_limit
        return None if limit is None else max(limit - self.openai_requests, 0)

    def reset(self) -> None:
        self.faults.clear()
        self.calls.clear()
        self.openai_requests = 0


class Dropped(Exception):
    """The fault cut the connection; nothing more can be sent."""


ErrorFactory = Callable[..., ErrorAnswer]
"""A provider's error function: `(status, error_type, message, *, retry_after, **fill)`."""


@dataclass(frozen=True, slots=True)
class JsonBody:
    """A request body read whole, and what it holds when it is JSON."""

    raw: bytes
    parsed: object  # None when it is not JSON

    @property
    def data(self) -> dict[str, object]:
        """The JSON object, or an empty one when the body is something else."""
        return self.parsed if isinstance(self.parsed, dict) else {}

    def string(self, name: str) -> str:
        """The object's field `name` when it is a string, else ""."""
        value = self.data.get(name)
        return value if isinstance(value, str) else ""

    @property
    def is_object(self) -> bool:
        return isinstance(self.parsed, dict)

    @property
    def recorded(self) -> object:
        """What the call log keeps: the JSON object, or the body as text."""
        return self.parsed if isinstance(self.parsed, dict) else self.raw.decode("utf-8", "replace")


async def read_json(request: web.Request) -> JsonBody:
    raw = await request.read()
    try:
        return JsonBody(raw, orjson.loads(raw))
    except orjson.JSONDecodeError:
        return JsonBody(raw, None)


class Exchange:
    __slots__ = ("fault", "provider", "record", "request", "request_id", "state")

    def __init__(
        self,
        state: FakeState,
        request: web.Request,
        *,
        provider: str,
        endpoint: str,
        model: str,
        stream: bool,
        body: object,
        request_id: str,
    ) -> None:
        self.state = state
        self.request = request
        self.provider = provider
        self.request_id = request_id
        self.record: CallRecord = state.calls.record(
            provider=provider,
            endpoint=endpoint,
            method=request.method,
            path=request.path,
            model=model,
            stream=stream,
            headers=request.headers,
            body=body,
        )
        self.record.request_id = request_id
        if request.transport is not None:
            self.record.peer = request.transport.get_extra_info("peername")
        self.record.query = dict(request.query)
        request[EXCHANGE] = self
        ruled = state.faults.match(provider, endpoint, model, stream)
        fault = state.defaults.merged(ruled)
        try:
            fault = fault.merged(fault_from_headers(request.headers.items()))
        except FaultError as exc:
            self.record.fault = {"invalid": str(exc)}
            raise
        self.fault = fault
        if ruled is not None or (fault is not state.defaults and fault.active):
            self.record.fault = fault.describe()

    # ---- timing ------------------------------------------------------------------------

    @property
    def reply_words(self) -> int:
        return self.fault.reply_words or self.state.config.reply_words

    async def sleep_ms(self, value: float | None) -> None:
        if value:
            await asyncio.sleep(value / 1000)

    async def interfere(self, error: ErrorFactory, **fill: object) -> web.StreamResponse | None:
        """Apply the fault before any answer: delay, hang, cut, or an error status (built by
        the provider's `error` function, its message filled in from `fill`)."""
        fault = self.fault
        await self.sleep_ms(fault.latency_ms)
        if fault.timeout:
            self.record.outcome = "timeout"
            await asyncio.sleep(self.state.config.hang_seconds)
        if fault.drop_after_chunks is not None and not self.record.stream:
            self.drop()
        if fault.status is not None or fault.body is not None or fault.error_type is not None:
            answer = error(
                fault.status, fault.error_type, fault.message, retry_after=fault.retry_after, **fill
            )
            if fault.body is not None:
                answer.body = fault.body
            return self.error(answer)
        return None

    async def generation_delay(self, chunks: int) -> None:
        """A non-streamed answer takes as long as its stream would have."""
        fault = self.fault
        total = (fault.ttft_ms or 0.0) + (fault.chunk_delay_ms or 0.0) * max(chunks - 1, 0)
        await self.sleep_ms(total)

    def drop(self) -> None:
        self.record.outcome = "dropped"
        transport = self.request.transport
        if transport is not None:
            transport.close()
        raise Dropped

    # ---- answers -----------------------------------------------------------------------

    def _headers(self, extra: dict[str, str] | None) -> dict[str, str]:
        headers = {self._request_id_header(): self.request_id}
        if extra:
            headers.update(extra)
        return headers

    def _request_id_header(self) -> str:
        return "request-id" if self.provider in ("anthropic", "elevenlabs") else "x-request-id"

    def error(self, answer: ErrorAnswer) -> web.Response:
        self.record.status = answer.status
        self.record.outcome = "error"
        return web.Response(
            status=answer.status,
            body=orjson.dumps(answer.body),
            content_type="application/json",
            headers=self._headers(answer.headers),
        )

    def json(
        self,
        body: object,
        headers: dict[str, str] | None = None,
        content_type: str = "application/json",
    ) -> web.Response:
        self.record.status = 200
        self.record.outcome = "ok"
        return web.Response(
            body=orjson.dumps(body), content_type=content_type, headers=self._headers(headers)
        )

    def binary(self, data: bytes, content_type: str, headers: dict[str, str]) -> web.Response:
        self.record.status = 200
        self.record.outcome = "ok"
        return web.Response(
            body=data, headers=self._headers({**headers, "Content-Type": content_type})
        )

    async def open_stream(self, content_type: str, headers: dict[str, str] | None = None) -> Stream:
        response = web.StreamResponse(headers=self._headers(headers))
        response.content_type = content_type
        if content_type == "text/event-stream":
            response.charset = "utf-8"
            response.headers["Cache-Control"] = "no-cache"
        self.record.status = 200
        await response.prepare(self.request)
        return Stream(self, response)


EXCHANGE = web.RequestKey("oneflow_fake_exchange", Exchange)


class Stream:
    """A streamed answer. `content()` sends one content chunk, honouring the fault's time to
    first token, chunk delay, cut connection and in-stream error."""

    __slots__ = ("exchange", "response", "sent")

    def __init__(self, exchange: Exchange, response: web.StreamResponse) -> None:
        self.exchange = exchange
        self.response = response
        self.sent = 0

    async def opening(self, data: bytes) -> None:
        """An event before any content (role chunk, message_start, ...)."""
        await self.response.write(data)

    async def content(self, data: bytes, stream_error: Callable[[], bytes]) -> None:
        """One content chunk. Raises `Dropped` when the fault cuts the stream here, and
        `StreamFailed` after sending the in-stream error the fault asks for."""
        fault = self.exchange.fault
        if fault.drop_after_chunks is not None and self.sent >= fault.drop_after_chunks:
            self.exchange.drop()
        if fault.error_after_chunks is not None and self.sent >= fault.error_after_chunks:
            await self.response.write(stream_error())
            raise StreamFailed
        await self.exchange.sleep_ms(fault.ttft_ms if self.sent == 0 else fault.chunk_delay_ms)
        await self.response.write(data)
        self.sent += 1
        self.exchange.record.chunks_sent = self.sent

    async def closing(self, data: bytes) -> None:
        """Events after the content (finish, usage, terminator)."""
        fault = self.exchange.fault
        if fault.drop_after_chunks is not None and self.sent >= fault.drop_after_chunks:
            self.exchange.drop()
        await self.response.write(data)

    async def finish(self) -> web.StreamResponse:
        await self.response.write_eof()
        self.exchange.record.outcome = "ok"
        return self.response

    async def failed(self) -> web.StreamResponse:
        await self.response.write_eof()
        self.exchange.record.outcome = "stream_error"
        return self.response


class StreamFailed(Exception):
    """An in-stream error event was sent; the stream ends without its normal close."""


def now() -> int:
    return int(time.time())


def sse(data: bytes, event: str | None = None) -> bytes:
    """One server-sent event."""
    if event is None:
        return b"data: " + data + b"\n\n"
    return b"event: " + event.encode() + b"\ndata: " + data + b"\n\n"
