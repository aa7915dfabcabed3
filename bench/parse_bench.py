"""CPU per request body read at the model endpoints (a benchmark, not a test).

    .venv/bin/python -m bench.parse_bench [--repeat 20000]

Reads representative bodies the way the endpoints do (bytes -> JSON object -> canonical
request, every field checked) for each dialect: a one-turn chat, a multi-turn conversation
with tools and tool results, and a streamed call with sampling fields. The baseline in the
same run is `orjson.loads` alone (what any reader pays). It prints the median of 7 rounds in
microseconds per body, and the added cost over the baseline. Figures on a shared machine are
noisy; compare runs made one after the other.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from typing import Any

import orjson

from oneflow_ai.api.anthropic_request import parse_messages_request
from oneflow_ai.api.openai_chat_request import parse_chat_request
from oneflow_ai.api.validation import parse_object

WEATHER = {
    "type": "object",
    "properties": {"city": {"type": "string"}, "unit": {"enum": ["c", "f"]}},
    "required": ["city"],
}
OPENAI: dict[str, dict[str, Any]] = {
    "one turn": {"model": "gpt-4o", "messages": [{"role": "user", "content": "Hello there"}]},
    "tools, 6 turns": {
        "model": "gpt-4o",
        "messages": [
            {"role": "system", "content": "You are terse."},
            {"role": "user", "content": "Weather in Paris and Rome?"},
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {
                        "id": f"call_{i}",
                        "type": "function",
                        "function": {"name": "weather", "arguments": '{"city": "Paris"}'},
                    }
                    for i in range(2)
                ],
            },
            {"role": "tool", "tool_call_id": "call_0", "content": "18 C"},
            {"role": "tool", "tool_call_id": "call_1", "content": "24 C"},
            {"role": "user", "content": [{"type": "text", "text": "And tomorrow?"}]},
        ],
        "tools": [
            {
                "type": "function",
                "function": {"name": "weather", "description": "Now", "parameters": WEATHER},
            }
        ],
        "tool_choice": "auto",
    },
    "stream, sampling": {
        "model": "gpt-4o-mini",
        "messages": [{"role": "user", "content": "Count to ten"}],
        "stream": True,
        "stream_options": {"include_usage": True},
        "temperature": 0.2,
        "top_p": 0.9,
        "max_tokens": 64,
        "stop": ["11"],
        "user": "u-1",
    },
}
ANTHROPIC: dict[str, dict[str, Any]] = {
    "one turn": {
        "model": "claude-3-haiku-20240307",
        "max_tokens": 256,
        "messages": [{"role": "user", "content": "Hello there"}],
    },
    "tools, 4 turns": {
        "model": "claude-3-haiku-20240307",
        "max_tokens": 256,
        "system": "You are terse.",
        "messages": [
            {"role": "user", "content": "Weather in Paris?"},
            {
                "role": "assistant",
                "content": [
                    {"type": "text", "text": "Checking."},
                    {"type": "tool_use", "id": "toolu_1", "name": "weather", "input": {}},
                ],
            },
            {
                "role": "user",
                "content": [{"type": "tool_result", "tool_use_id": "toolu_1", "content": "18 C"}],
            },
            {"role": "user", "content": [{"type": "text", "text": "And tomorrow?"}]},
        ],
        "tools": [{"name": "weather", "description": "Now", "input_schema": WEATHER}],
        "tool_choice": {"type": "auto"},
    },
    "stream, sampling": {
        "model": "claude-3-haiku-20240307",
        "max_tokens": 64,
        "messages": [{"role": "user", "content": "Count to ten"}],
        "stream": True,
        "temperature": 0.2,
        "top_p": 0.9,
        "stop_sequences": ["11"],
        "metadata": {"user_id": "u-1"},
    },
}


def per_call_us(work: Callable[[], object], repeat: int) -> float:
    """Median of 7 rounds, CPU microseconds per call (process time: a shared machine's
    other work is not counted)."""
    rounds = []
    for _ in range(7):
        start = time.process_time()
        for _ in range(repeat):
            work()
        rounds.append((time.process_time() - start) / repeat * 1e6)
    return statistics.median(rounds)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--repeat", type=int, default=20000)
    args = parser.parse_args()
    print(f"{'dialect':10} {'body':18} {'orjson us':>10} {'parse us':>10} {'added us':>10}")
    cases: list[tuple[str, str, bytes, Callable[[bytes], object]]] = [
        ("openai", name, orjson.dumps(body), lambda raw: parse_chat_request(parse_object(raw)))
        for name, body in OPENAI.items()
    ] + [
        (
            "anthropic",
            name,
            orjson.dumps(body),
            lambda raw: parse_messages_request(parse_object(raw)),
        )
        for name, body in ANTHROPIC.items()
    ]
    for dialect, name, raw, parse in cases:
        base = per_call_us(lambda raw=raw: orjson.loads(raw), args.repeat)  # type: ignore[misc]
        full = per_call_us(lambda raw=raw, parse=parse: parse(raw), args.repeat)  # type: ignore[misc]
        print(f"{dialect:10} {name:18} {base:10.2f} {full:10.2f} {full - base:10.2f}")


if __name__ == "__main__":
    main()
