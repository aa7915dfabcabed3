"""The SSE reader: events split anywhere across chunks, CRLF, multi-line data, comments."""

from __future__ import annotations

from collections.abc import AsyncIterator

from oneflow_ai.providers.sse import SSEEvent, iter_sse_batches


async def _chunks(*parts: bytes) -> AsyncIterator[bytes]:
    for part in parts:
        yield part


async def _events(*parts: bytes) -> list[SSEEvent]:
    return [event async for batch in iter_sse_batches(_chunks(*parts)) for event in batch]


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


async def test_events_that_arrive_together_come_in_one_batch() -> None:
    batches = [
        batch
        async for batch in iter_sse_batches(
            _chunks(b"data: 1\n\ndata: 2\n\ndata: 3", b"\n\n", b": comment only\n\n")
        )
    ]
    assert batches == [[SSEEvent(None, b"1"), SSEEvent(None, b"2")], [SSEEvent(None, b"3")]]
