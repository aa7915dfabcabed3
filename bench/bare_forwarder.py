"""The floor for `make bench`: a bare ASGI app that forwards a chat completion to the upstream
with one pooled aiohttp session and passes its answer back (a stream chunk by chunk as it
arrives), nothing else (no auth, no parsing, no pricing). Served by uvicorn (uvloop +
httptools) like the gateway. The upstream comes from `BARE_UPSTREAM_URL` and
`BARE_UPSTREAM_KEY`."""

from __future__ import annotations

import os
from typing import Any

import aiohttp

_session: dict[str, aiohttp.ClientSession] = {}
_UPSTREAM = os.environ.get("BARE_UPSTREAM_URL", "http://127.0.0.1:9100/openai/v1/chat/completions")
_HEADERS = {
    "Authorization": f"Bearer {os.environ.get('BARE_UPSTREAM_KEY', 'sk-fake')}",
    "Content-Type": "application/json",
}


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                _session["s"] = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=256))
                await send({"type": "lifespan.startup.complete"})
            else:
                await _session["s"].close()
                await send({"type": "lifespan.shutdown.complete"})
                return
    body = b""
    while True:
        message = await receive()
        body += message.get("body", b"")
        if not message.get("more_body"):
            break
    async with _session["s"].post(_UPSTREAM, data=body, headers=_HEADERS) as response:
        content_type = response.headers.get("Content-Type", "application/json").encode()
        if not content_type.startswith(b"text/event-stream"):
            data = await response.read()
            headers = [(b"content-type", content_type), (b"content-length", b"%d" % len(data))]
            await send(
                {"type": "http.response.start", "status": response.status, "headers": headers}
            )
            await send({"type": "http.response.body", "body": data})
            return
        start = {"type": "http.response.start", "status": response.status}
        await send({**start, "headers": [(b"content-type", content_type)]})
        async for chunk in response.content.iter_any():
            await send({"type": "http.response.body", "body": chunk, "more_body": True})
        await send({"type": "http.response.body", "body": b""})
