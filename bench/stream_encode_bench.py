"""What a same-dialect stream costs the gateway's CPU, forwarded or re-encoded (a benchmark).

    .venv/bin/python -m bench.stream_encode_bench [--repeat 2000] [--chunks 40]

One streamed OpenAI answer (`--chunks` content chunks, then the finish and usage chunks, as
OpenAI sends them with `logprobs` off) goes through the provider's decoder and the edge's
encoder, in process, with no network: once as a same-dialect stream is handled now (each
chunk decoded for the accounting and forwarded as it came, `OpenAIPassthrough`), once as every
stream was before (decoded, then written again from the canonical events, `ChunkEncoder`).
Reports the median and p90 microseconds per stream of each, over `--repeat` streams, and the
ratio. CPU only: the shared machine's noise moves both alike; what the network and the hooks
cost is `make bench`'s to measure.
"""

from __future__ import annotations

import argparse
import statistics
import time

import orjson

from oneflow_ai.api.openai_chat import ChunkEncoder
from oneflow_ai.api.passthrough import OpenAIPassthrough
from oneflow_ai.api.responses import StreamEncoder
from oneflow_ai.domain.chat import StreamEvent
from oneflow_ai.domain.usage import Usage
from oneflow_ai.providers.openai import OpenAIStream
from oneflow_ai.providers.sse import SSEEvent

_ENVELOPE = {
    "id": "chatcmpl-bench",
    "object": "chat.completion.chunk",
    "created": 1,
    "model": "gpt-4o-2024-08-06",
    "service_tier": "default",
    "system_fingerprint": "fp_bench",
}


def _chunk(delta: dict[str, object], finish: str | None = None) -> bytes:
    choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}
    return orjson.dumps({**_ENVELOPE, "choices": [choice], "usage": None})


def wire_stream(chunks: int) -> list[SSEEvent]:
    events = [_chunk({"role": "assistant", "content": ""})]
    events += [_chunk({"content": f" word{i}"}) for i in range(chunks)]
    events.append(_chunk({}, "stop"))
    usage = {"prompt_tokens": 12, "completion_tokens": chunks, "total_tokens": 12 + chunks}
    events.append(orjson.dumps({**_ENVELOPE, "choices": [], "usage": usage}))
    return [SSEEvent(None, data) for data in events]


def one_stream(stream: list[SSEEvent], forward: bool) -> bytes:
    decoder = OpenAIStream("openai", "gpt-4o", forward=forward)
    encoder: StreamEncoder
    if forward:
        encoder = OpenAIPassthrough(model="gpt-4o", created=1, include_usage=True)
    else:
        encoder = ChunkEncoder(model="gpt-4o", created=1, include_usage=True)
    out: list[bytes] = []
    for sse in stream:
        events: list[StreamEvent] = []
        decoder.decode(sse, events)
        out.append(b"".join([encoder.event(event) for event in events]))
    out.append(encoder.end(Usage(input_tokens=12, output_tokens=len(stream)), None))
    return b"".join(out)


def measure(stream: list[SSEEvent], forward: bool, repeat: int) -> list[float]:
    samples = []
    for _ in range(repeat):
        started = time.perf_counter()
        one_stream(stream, forward)
        samples.append((time.perf_counter() - started) * 1e6)
    return samples


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=2000)
    parser.add_argument("--chunks", type=int, default=40)
    args = parser.parse_args()
    stream = wire_stream(args.chunks)
    results: dict[str, list[float]] = {"re-encoded": [], "forwarded": []}
    for _ in range(5):  # interleaved rounds: a neighbour's burst hits both
        results["re-encoded"] += measure(stream, False, args.repeat // 5)
        results["forwarded"] += measure(stream, True, args.repeat // 5)
    medians = {}
    for name, samples in results.items():
        medians[name] = statistics.median(samples)
        p90 = statistics.quantiles(samples, n=10)[-1]
        print(f"{name:11} median {medians[name]:8.1f} us/stream   p90 {p90:8.1f} us/stream")
    ratio = medians["forwarded"] / medians["re-encoded"]
    print(f"forwarded / re-encoded: {ratio:.2f} ({args.chunks} content chunks per stream)")


if __name__ == "__main__":
    main()
