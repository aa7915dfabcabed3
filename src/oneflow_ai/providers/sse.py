"""Server-sent events from a provider's streamed answer, read fast.

Follows the parts of the WHATWG event-stream rules that providers use: lines end with `\\n` or
`\\r\\n`; `data:` lines of one event are joined with `\\n`; `event:` names it; a blank line
ends it; comments (`:`), `id:` and `retry:` are skipped; an event not ended by a blank line when
the stream closes is dropped. Data stays `bytes` so it goes to `orjson.loads` without a decode.

Events come in batches, one per network read: whatever arrived together is handled together,
so the gateway writes it on to its caller in one piece rather than one write per event.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, AsyncIterator
from dataclasses import dataclass

__all__ = ["SSEEvent", "iter_sse_batches"]


@dataclass(frozen=True, slots=True)
class SSEEvent:
    event: str | None
    data: bytes


async def iter_sse_batches(
    chunks: AsyncIterator[bytes],
) -> AsyncGenerator[list[SSEEvent], None]:
    """The events completed by each chunk of the body (chunk boundaries may fall anywhere);
    chunks that complete no event yield nothing."""
    pending = b""
    event: str | None = None
    data: list[bytes] = []
    async for chunk in chunks:
        if pending:
            chunk = pending + chunk
        lines = chunk.split(b"\n")
        pending = lines.pop()
        batch: list[SSEEvent] = []
        for line in lines:
            if line[-1:] == b"\r":
                line = line[:-1]
            if not line:
                if data:
                    batch.append(SSEEvent(event, data[0] if len(data) == 1 else b"\n".join(data)))
                    data = []
                event = None
            elif line[:5] == b"data:":
                data.append(line[6:] if line[5:6] == b" " else line[5:])
            elif line[:6] == b"event:":
                event = (line[7:] if line[6:7] == b" " else line[6:]).decode()
        if batch:
            yield batch
