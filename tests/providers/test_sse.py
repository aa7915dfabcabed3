"""The SSE reader: events split anywhere across chunks, CRLF, multi-line data, comments."""

from __future__ import annotations

from collections.abc import AsyncIterator

from oneflow_ai.providers.sse import SSEEvent, iter_sse


async def _chunks(*parts: bytes) -> AsyncIterator[bytes]:
    for part in parts:
        yield part


async def _events(*parts: bytes) -> list[SSEEvent]:
    return [event async for event in iter_sse(_chunks(*parts))]


async def test_events_split_at_every_byte_are_reassembled() -> None:
    stream = b'data: {"a":1}\n\nevent: message_stop\ndata: {"type":"message_stop"}\n\n'
    whole = await _events(stream)
    bytewise = await _events(*(stream[i : i + 1] for i in range(len(stream))))
    assert (
        whole
        == bytewise
        == [
            SSEEvent(None, b'{"a":1}'),
            SSEEvent("message_stop", b'{"type":"message_stop"}'),
        ]
    )


async def test_crlf_comments_multiline_data_and_no_space() -> None:
    events = await _events(
        b": keep-alive\r\n\r\n",
        b"data:first\r\ndata: second\r\n\r\n",
        b"id: 7\nretry: 10\nevent:ping\ndata: {}\n\n",
    )
    assert events == [SSEEvent(None, b"first\nsecond"), SSEEvent("ping", b"{}")]


async def test_an_unterminated_event_at_the_end_is_dropped() -> None:
    assert await _events(b"data: [DONE]\n\ndata: partial") == [SSEEvent(None, b"[DONE]")]
