"""Load through real gateway processes: the fake providers as a process of their own
(`oneflow fake-providers`), gateway replicas from `gateway_process`, and clients that read
whole answers (streamed or not) the way an SDK would see them complete.
"""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path

import aiohttp
import httpx
import orjson
from sqlalchemy.ext.asyncio import AsyncEngine

from oneflow_fakes import FakeProviders, base_urls
from tests.support.gateway_process import stop_process
from tests.support.ledger import snapshot
from tests.support.ports import start_on_port_0

__all__ = [
    "DIALECTS",
    "HANG_GUARD",
    "MASTER",
    "Answer",
    "FakeProcess",
    "StreamLoad",
    "StreamRead",
    "admin_call",
    "fake_process",
    "fakes_env",
    "gateway_env",
    "new_prepaid_project",
    "new_project",
    "post_chat",
    "stream_chat",
    "wait_reconciled",
]

MASTER = "sk-master-for-gateway-load-tests-0123456789"
ADMIN = {"Authorization": f"Bearer {MASTER}"}
ROOT = Path(__file__).resolve().parents[2]
#: A guard against a hang, never a measure: generous on a busy 2-core machine.
HANG_GUARD = 120.0


class FakeProcess:
    """`oneflow fake-providers` in a process of its own, steered through its control plane."""

    def __init__(self, log_path: Path, *options: str) -> None:
        self._log = log_path.open("w")
        try:
            self.process, self.port = start_on_port_0(
                [sys.executable, "-m", "oneflow_ai", "fake-providers", *options],
                timeout=HANG_GUARD,
                cwd=ROOT,
                stdout=self._log,
                stderr=self._log,
            )
        except RuntimeError:
            self._log.close()
            raise RuntimeError(
                f"fake providers did not start: {log_path.read_text()[-2000:]}"
            ) from None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def env(self) -> dict[str, str]:
        """Environment pointing a gateway at these fakes."""
        return fakes_env(self.url)

    def calls(self, provider: str | None = None) -> dict[str, object]:
        query = {"body": "0", **({"provider": provider} if provider else {})}
        response = httpx.get(f"{self.url}/_fake/calls", params=query, timeout=30)
        response.raise_for_status()
        answer: dict[str, object] = response.json()
        return answer

    def call_count(self, provider: str | None = None) -> int:
        total = self.calls(provider)["total"]
        assert isinstance(total, int)
        return total

    def reset(self) -> None:
        httpx.post(f"{self.url}/_fake/reset", timeout=30).raise_for_status()

    def stop(self) -> None:
        stop_process(self.process)
        self._log.close()


@contextmanager
def fake_process(log_path: Path, *options: str) -> Iterator[FakeProcess]:
    fakes = FakeProcess(log_path, *options)
    try:
        yield fakes
    finally:
        fakes.stop()


def fakes_env(fakes_url: str) -> dict[str, str]:
    """Environment pointing a gateway at the fake providers serving at `fakes_url`."""
    out = {"FAKE_PROVIDERS": "off"}
    for provider, url in base_urls(fakes_url).items():
        out[f"{provider.upper()}_BASE_URL"] = url
        out[f"{provider.upper()}_API_KEY"] = "sk-fake-key-0123456789"
    return out


def gateway_env(
    database_url: str, fakes: FakeProcess | FakeProviders, **extra: str
) -> dict[str, str]:
    """A gateway on `database_url` in front of `fakes` (a process of their own, or served by
    this one): one upstream attempt per request (so upstream calls can be counted) and no rate
    limit in the way of a load."""
    return {
        "DATABASE_URL": database_url,
        "ONEFLOW_MASTER_KEY": MASTER,
        "API_KEY_PEPPER": "pepper-for-gateway-load-tests-0123456789abcdef",
        "LOG_LEVEL": "WARNING",
        "UPSTREAM_MAX_RETRIES": "0",
        "RATE_LIMIT_PER_MINUTE": "0",
        "RATE_LIMIT_PER_HOUR": "0",
        **fakes_env(fakes.url),
        **extra,
    }


async def wait_reconciled(engine: AsyncEngine, project: str) -> None:
    """Wait until `project` has no reservation left (a dead gateway's are reconciled once its
    heartbeat is older than the owner timeout)."""
    deadline = time.monotonic() + HANG_GUARD
    while (await snapshot(engine, project)).reservations:
        assert time.monotonic() < deadline, "the dead gateway's reservations were never reconciled"
        await asyncio.sleep(0.2)


def admin_call(gateway_url: str, method: str, path: str, body: object = None) -> httpx.Response:
    """A call with the master key that must succeed."""
    response = httpx.request(method, gateway_url + path, json=body, headers=ADMIN, timeout=30)
    assert response.status_code < 300, (method, path, response.status_code, response.text)
    return response


def new_project(gateway_url: str, project: str) -> str:
    """Create `project` (postpaid: no limit) and a key of its own; the key."""
    admin_call(gateway_url, "POST", "/api/v1/projects", {"name": project, "id": project})
    key = admin_call(gateway_url, "POST", "/api/v1/keys", {"name": "load", "project_id": project})
    secret: str = key.json()["key"]
    return secret


def new_prepaid_project(gateway_url: str, project: str, credits: str) -> str:
    """Create `project` with `credits` prepaid (a real hold per request); a key of its own."""
    key = new_project(gateway_url, project)
    path = f"/api/v1/projects/{project}/credits"
    topped = admin_call(gateway_url, "POST", path, {"credits": credits})
    assert topped.json()["mode"] == "prepaid", topped.text
    return key


def chat_body(*, stream: bool, prompt: str = "Say something", max_tokens: int = 64) -> bytes:
    body: dict[str, object] = {
        "model": "gpt-4o",
        "messages": [{"role": "user", "content": prompt}],
        "max_tokens": max_tokens,
        "stream": stream,
    }
    if stream:
        body["stream_options"] = {"include_usage": True}
    return orjson.dumps(body)


#: Each dialect's streaming chat endpoint and a request body for it.
CHAT_PATHS = {"openai": "/v1/chat/completions", "anthropic": "/v1/messages"}


DIALECTS = tuple(CHAT_PATHS)


def stream_body(dialect: str, prompt: str) -> bytes:
    if dialect == "openai":
        return chat_body(stream=True, prompt=prompt)
    return orjson.dumps(
        {
            "model": "claude-3-haiku-20240307",
            "messages": [{"role": "user", "content": prompt}],
            "max_tokens": 64,
            "stream": True,
        }
    )


@dataclass
class StreamRead:
    """What a client read of one streamed answer (OpenAI or Anthropic dialect)."""

    request_id: str
    dialect: str = "openai"
    status: int = 0
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""
    #: Credits the final usage event announced (None: the client never saw it).
    credits: Decimal | None = None
    #: The stream's end (`[DONE]`, Anthropic's `message_stop`) arrived after the usage event.
    done: bool = False
    started: bool = False  # some content arrived
    error: str | None = None
    #: The text of the content events received so far, and how many there were.
    text: str = ""
    content_events: int = 0

    @property
    def complete(self) -> bool:
        return self.status == 200 and self.done and self.credits is not None

    @property
    def gateway_id(self) -> str | None:
        """The gateway's own id of the request (the key of its charge), once headers came."""
        return self.headers.get("x-oneflow-request-id")


def _headers(response: aiohttp.ClientResponse) -> dict[str, str]:
    return {name.lower(): value for name, value in response.headers.items()}


async def stream_chat(
    session: aiohttp.ClientSession,
    url: str,
    key: str,
    read: StreamRead,
    *,
    extra_headers: dict[str, str] | None = None,
    prompt: str = "Say something",
) -> StreamRead:
    """One streamed chat request in `read.dialect`, read into `read` as it arrives (others
    may watch it) to its end or until the connection breaks."""
    headers = {
        "Authorization": f"Bearer {key}",
        "Content-Type": "application/json",
        "anthropic-version": "2023-06-01",
        "X-Request-ID": read.request_id,
        **(extra_headers or {}),
    }
    parts: list[bytes] = []
    try:
        async with session.post(
            url + CHAT_PATHS[read.dialect],
            data=stream_body(read.dialect, prompt),
            headers=headers,
        ) as response:
            read.status, read.headers = response.status, _headers(response)
            async for line in response.content:
                parts.append(line)
                _observe_sse_line(read, line.strip())
    except (aiohttp.ClientError, ConnectionError) as exc:
        read.error = repr(exc)
    read.body = b"".join(parts)
    return read


def _observe_sse_line(read: StreamRead, line: bytes) -> None:
    if not line.startswith(b"data: "):
        return
    data = line.removeprefix(b"data: ")
    if data == b"[DONE]":
        read.done = read.credits is not None
        return
    try:
        event = orjson.loads(data)
    except orjson.JSONDecodeError:  # the last line of a stream cut off in the middle of it
        return
    kind = event.get("type")  # Anthropic's events say what they are; OpenAI's chunks do not
    if event.get("choices") or kind == "content_block_delta":
        read.started = True
        delta = event.get("delta") or (event.get("choices") or [{}])[0].get("delta") or {}
        piece = delta.get("text") or delta.get("content")
        if piece:
            read.text += piece
            read.content_events += 1
    if "oneflow" in event and (event.get("usage") or kind == "message_delta"):
        read.credits = Decimal(event["oneflow"]["credits"])
    if kind == "message_stop":
        read.done = read.credits is not None


@dataclass
class Answer:
    status: int
    headers: dict[str, str]
    body: bytes

    def oneflow_headers(self) -> dict[str, str]:
        """What answered and what it cost; not the request's own id (a replay is a request
        of its own, with an id of its own)."""
        return {
            k: v
            for k, v in self.headers.items()
            if k.startswith("x-oneflow-") and k != "x-oneflow-request-id"
        }


async def post_chat(
    session: aiohttp.ClientSession,
    url: str,
    key: str,
    *,
    stream: bool = False,
    extra_headers: dict[str, str] | None = None,
    body: bytes | None = None,
) -> Answer:
    """One chat request (`body`, or `chat_body(stream=stream)`) read whole."""
    headers = {
        "Authorization": f"Bearer {key}",
        "Content-Type": "application/json",
        **(extra_headers or {}),
    }
    async with session.post(
        f"{url}/v1/chat/completions",
        data=body if body is not None else chat_body(stream=stream),
        headers=headers,
    ) as response:
        return Answer(response.status, _headers(response), await response.read())


class StreamLoad:
    """`clients` clients streaming one chat request after another through one gateway, each
    request with an id of its own (`{prefix}-{n}`, sent as X-Request-ID; the gateway's own id,
    which keys the charge, is `StreamRead.gateway_id`), in the OpenAI
    and the Anthropic dialect in turn."""

    #: Seconds between the clients' first requests: streams end at different moments.
    STAGGER = 0.013

    def __init__(self, url: str, key: str, prefix: str, clients: int) -> None:
        self.url, self.key, self.prefix, self.clients = url, key, prefix, clients
        self.reads: list[StreamRead] = []
        self.stopped = False

    def complete(self) -> list[StreamRead]:
        return [read for read in self.reads if read.complete]

    def cut_off(self) -> list[StreamRead]:
        return [read for read in self.reads if not read.complete]

    def mid_stream(self) -> list[StreamRead]:
        return [read for read in self.reads if read.started and not read.done and not read.error]

    async def run(self, until: Callable[[StreamLoad], bool]) -> None:
        """Stream until `until(self)` holds (checked every few milliseconds), then let every
        client finish (or lose) the request it has in hand."""
        connector = aiohttp.TCPConnector(limit=self.clients)
        timeout = aiohttp.ClientTimeout(total=HANG_GUARD)
        async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:

            async def client(index: int) -> None:
                await asyncio.sleep(index * self.STAGGER)
                while not self.stopped:
                    n = len(self.reads)
                    read = StreamRead(f"{self.prefix}-{n}", DIALECTS[n % len(DIALECTS)])
                    self.reads.append(read)
                    await stream_chat(session, self.url, self.key, read)

            clients = asyncio.gather(*(client(i) for i in range(self.clients)))
            deadline = time.monotonic() + HANG_GUARD
            try:
                while not until(self):
                    assert time.monotonic() < deadline, "the load did not get going"
                    await asyncio.sleep(0.005)
            finally:
                self.stopped = True
                await clients
