"""`SSEParser`: a chunk that is one whole event of one data line reads like any other."""

from __future__ import annotations

from oneflow_ai.providers.sse import SSEEvent, SSEParser


def test_whole_events_keep_a_name_given_in_an_earlier_chunk() -> None:
    parser = SSEParser()
    assert parser.feed(b"event: delta\n") == []
    assert parser.feed(b'data: {"a":1}\n\n') == [SSEEvent("delta", b'{"a":1}')]
    assert parser.feed(b'data: {"b":2}\n\n') == [SSEEvent(None, b'{"b":2}')]


def test_whole_events_after_a_split_one_and_with_crlf() -> None:
    parser = SSEParser()
    assert parser.feed(b"data: fir") == []
    assert parser.feed(b"st\n\n") == [SSEEvent(None, b"first")]
    assert parser.feed(b"data: 2\r\n\r\n") == [SSEEvent(None, b"2")]
    assert parser.feed(b"data: x\ndata: y\n\n") == [SSEEvent(None, b"x\ny")]
    assert parser.feed(b"data: 3\n\n") == [SSEEvent(None, b"3")]
    assert parser.feed(b"data: [DONE]\n\n") == [SSEEvent(None, b"[DONE]")]


def test_a_data_line_left_open_joins_the_next_chunk() -> None:
    parser = SSEParser()
    assert parser.feed(b"data: a\n") == []
    assert parser.feed(b"data: b\n\n") == [SSEEvent(None, b"a\nb")]
