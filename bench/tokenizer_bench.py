"""Token counting speed on a 100 KB text, per encoding (a benchmark, not a test).

    .venv/bin/python bench/tokenizer_bench.py [--repeat 30]

For each encoding it reports the one-off cost of building the encoding from the vendored rank
files, then counts a 100 KB English text and a 100 KB multilingual text (prose, code, Cyrillic,
CJK, emoji) ``--repeat`` times with OneFlow's ``count_tokens`` and, as the baseline in the same
run, with tiktoken's own encoding (built by ``tiktoken.get_encoding`` from a temporary cache
directory). It prints the median and p90 time per pass, tokens/s at the median, and the ratio
OneFlow / tiktoken (1.00 means no overhead).
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import os
import random
import statistics
import tempfile
import time
from collections.abc import Callable
from importlib import resources
from pathlib import Path

import tiktoken

from oneflow_ai.billing.encoding import ENCODING_NAMES, get_encoding
from oneflow_ai.billing.tokenizer import count_tokens

SIZE = 100 * 1024  # bytes of UTF-8

ENGLISH = (
    "OneFlow AI is a pricing and routing layer for AI models. It picks the model that fits "
    "the request best by price, speed or quality, keeps answering when a provider fails, and "
    "charges exactly for the tokens, images and characters that were used. "
)
MIXED = [
    ENGLISH,
    "def price(model: str, tokens: int) -> Decimal:\n    return TABLE[model] * tokens / 10**6\n",
    "Прозрачное ценообразование на основе токенов с нормализацией к кредитам. ",
    "自动选择最优模型（价格、速度、质量）。料金はトークン単位で正確に計算されます。",
    "Fallbacks 🔄 metrics 📊 security 🔐 routing 🔀 ",
    '{"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}]}\n',
]


def build_text(parts: list[str], seed: int) -> str:
    rng = random.Random(seed)
    chunks: list[str] = []
    size = 0
    while size < SIZE:
        chunk = rng.choice(parts)
        chunks.append(chunk)
        size += len(chunk.encode())
    return "".join(chunks).encode()[:SIZE].decode(errors="ignore")


def reference_encodings() -> dict[str, tiktoken.Encoding]:
    """tiktoken's own encodings, loaded from a temporary cache dir holding the vendored files."""
    with tempfile.TemporaryDirectory(prefix="tiktoken-cache-") as directory:
        cache = Path(directory)
        for name in ENCODING_NAMES:
            url = f"https://openaipublic.blob.core.windows.net/encodings/{name}.tiktoken"
            packaged = resources.files("oneflow_ai.billing").joinpath(
                "encodings", f"{name}.tiktoken.gz"
            )
            key = hashlib.sha1(url.encode()).hexdigest()  # tiktoken names cache files this way
            (cache / key).write_bytes(gzip.decompress(packaged.read_bytes()))
        os.environ["TIKTOKEN_CACHE_DIR"] = directory
        return {name: tiktoken.get_encoding(name) for name in ENCODING_NAMES}


def timings(
    first: Callable[[], int], second: Callable[[], int], repeat: int
) -> tuple[list[float], list[float]]:
    """Alternate the two functions so that both see the same machine noise."""
    first(), second()  # warm-up
    a: list[float] = []
    b: list[float] = []
    for _ in range(repeat):
        for function, samples in ((first, a), (second, b)):
            start = time.perf_counter()
            function()
            samples.append(time.perf_counter() - start)
    return a, b


def p90(samples: list[float]) -> float:
    return sorted(samples)[max(0, round(0.9 * len(samples)) - 1)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=30)
    args = parser.parse_args()

    texts = {"english": build_text([ENGLISH], 1), "mixed": build_text(MIXED, 2)}
    print(f"text size: {SIZE} bytes; {args.repeat} passes each; times per pass")

    for name in ENCODING_NAMES:
        start = time.perf_counter()
        get_encoding(name)
        print(f"\n{name}: built from vendored ranks in {time.perf_counter() - start:.2f} s")
    references = reference_encodings()

    header = f"{'encoding':<12} {'text':<8} {'tokens':>7} {'median ms':>10} {'p90 ms':>8}"
    print(f"\n{header} {'tokens/s':>12} {'MB/s':>6} {'vs tiktoken':>11}")
    for name in ENCODING_NAMES:
        for label, text in texts.items():
            tokens = count_tokens(text, name)
            reference = references[name]
            ours, base = timings(
                lambda text=text, name=name: count_tokens(text, name),
                lambda text=text, ref=reference: len(ref.encode_ordinary(text)),
                args.repeat,
            )
            median = statistics.median(ours)
            ratio = median / statistics.median(base)
            print(
                f"{name:<12} {label:<8} {tokens:>7} {median * 1e3:>10.2f} {p90(ours) * 1e3:>8.2f} "
                f"{tokens / median:>12,.0f} {SIZE / median / 1e6:>6.2f} {ratio:>11.2f}"
            )


if __name__ == "__main__":
    main()
