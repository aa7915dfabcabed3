"""Server-sent events from a provider's streamed answer, read fast.

Follows the parts of the WHATWG event-stream rules that providers use: lines end with `\\n` or
`\\r\\n`; `data:` lines of one event are joined with `\\n`; `event:` names it; a blank line
ends it; comments (`:`), `id:` and `retry:` are skipped; an event not ended by a blank line when
the stream closes is dropped. Data stays `bytes` so it goes to `orjson.loads` without a decode.

Events come in batches, one per network read: whatever arrived together is handled together,
so the gateway writes it on to its caller in one piece rather than one write per event.
`SSEParser.feed` reads one chunk (the engine calls it in its own loop over the body);
`iter_sse_batches` is the same over an iterator of chunks.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, AsyncIterator
from dataclasses import dataclass

__all__ = ["SSEEvent", "SSEParser", "iter_sse_batches"]


@dataclass(slots=True)
class SSEEvent:
    """One event: its name (None: the default, `message`) and its data. Not frozen: one is
    made for every event of every stream, and a frozen dataclass is three times slower to
    make."""

    event: str | None
    data: bytes


class SSEParser:
    """The events of a body fed chunk by chunk (chunk boundaries may fall anywhere)."""

    __slots__ = ("_data", "_event", "_pending")

    def __init__(self) -> None:
        self._pending = b""  # the start of a line not ended yet
        self._event: str | None = None  # the event being read: its name
        self._data: list[bytes] = []  # ... and its data lines so far

    def feed(self, chunk: bytes) -> list[SSEEvent]:
        """The events `chunk` completes (none when it ends none)."""
        if (
            # The common chunk, a whole event of one data line: nothing to split.
            not self._pending
            and not self._data
            and self._event is None
            and chunk[:6] == b"data: "
            and chunk[-2:] == b"\n\n"
            and chunk.count(b"\n") == 2
            and b"\r" not in chunk
        ):
            return [SSEEvent(None, chunk[6:-2])]
        if self._pending:
            chunk = self._pending + chunk
        lines = chunk.split(b"\n")
        self._pending = lines.pop()
        event, data = self._event, self._data
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
        self._event, self._data = event, data
        return batch


async def iter_sse_batches(
    chunks: AsyncIterator[bytes],
) -> AsyncGenerator[list[SSEEvent], None]:
    """The events completed by each chunk of the body (chunk boundaries may fall anywhere);
    chunks that complete no event yield nothing."""
    parser = SSEParser()
    async for chunk in chunks:
        batch = parser.feed(chunk)
        if batch:
            yield batch
