"""Fixtures for the token-counting tests: tiktoken's own encodings and a varied corpus."""

import gzip
import hashlib
import random
from collections.abc import Iterator
from importlib import resources

import pytest
import tiktoken

BLOB = "https://openaipublic.blob.core.windows.net/encodings/{name}.tiktoken"


@pytest.fixture(scope="session")
def reference_encodings(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[dict[str, tiktoken.Encoding]]:
    """tiktoken's own ``get_encoding``, fed from a cache dir instead of the network.

    The vendored files are written decompressed under the names tiktoken's cache uses (the
    SHA-1 of the blob URL); tiktoken then checks them against its own ``expected_hash`` and
    builds the encodings with its own pattern and special tokens.
    """
    cache = tmp_path_factory.mktemp("tiktoken-cache")
    for name in ("cl100k_base", "o200k_base"):
        url = BLOB.format(name=name)
        packaged = resources.files("oneflow_ai.billing").joinpath(
            "encodings", f"{name}.tiktoken.gz"
        )
        key = hashlib.sha1(
            url.encode()
        ).hexdigest()  # tiktoken names cache files by the URL's SHA-1
        (cache / key).write_bytes(gzip.decompress(packaged.read_bytes()))
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("TIKTOKEN_CACHE_DIR", str(cache))
        patch.delenv("DATA_GYM_CACHE_DIR", raising=False)
        yield {name: tiktoken.get_encoding(name) for name in ("cl100k_base", "o200k_base")}


FIXED_TEXTS = [
    "",
    " ",
    "a",
    "Hello, world!",
    "The quick brown fox jumps over the lazy dog.",
    "I'M HERE, you're there, they'd've, Y'ALL'D, it's, we'll, don't",
    "Привет, мир! Прозрачное ценообразование на основе токенов с нормализацией к кредитам.",
    "Точный расчёт input/output токенов; 1 USD = 100 credits.",
    "你好，世界。这是一个用于测试分词器的中文句子。",
    "こんにちは世界。お誕生日おめでとう！カタカナとひらがなと漢字。",
    "안녕하세요 세계. 한국어 문장입니다.",
    "مرحبا بالعالم. هذا نص عربي من اليمين إلى اليسار.",
    "नमस्ते दुनिया। यह एक हिंदी वाक्य है।",
    "สวัสดีชาวโลก นี่คือประโยคภาษาไทย",
    "Γειά σου Κόσμε. Ελληνικά κείμενα.",
    "שלום עולם",
    "Ünïcödé cömbïnïng: e\u0301 a\u0308 o\u0302 n\u0303 \u0041\u030a",
    "Zero\u200bwidth\u200cjoiner\u200dand\ufeffBOM and \ufffd replacement",
    "\u202eright-to-left override\u202c and \u2066isolates\u2069",
    "👋🏽 👨‍👩‍👧‍👦 🏳️‍🌈 🇺🇦 🇯🇵 ❤️‍🔥 🧑🏿‍💻 😀😃😄😁",
    "emoji🙂glued🚀to😅words",
    "𝔘𝔫𝔦𝔠𝔬𝔡𝔢 𝕞𝕒𝕥𝕙 𝒮𝒸𝓇𝒾𝓅𝓉 ∑∫∂√∞≈≠≤≥ ∀x∈ℝ: x²≥0",
    "   leading spaces",
    "trailing spaces   ",
    "tabs\t\tand\tmore\t",
    "line one\nline two\r\nline three\rline four\n\n\n",
    " \n \n\t \r\n  \u00a0\u2003\u3000 ",
    " " * 1000,
    "\n" * 257,
    "\t \n" * 100,
    "a" * 5000,
    "ab" * 2000,
    "🙂" * 500,
    "的" * 1000,
    "1234567890" * 50,
    "3.14159265358979323846264338327950288419716939937510",
    "-0.0001 +1e-9 1,234,567.89 0x1F 0b1010 ¹²³ ½ ¼",
    "<|endoftext|> is text here, as are <|fim_prefix|><|fim_middle|><|fim_suffix|><|endofprompt|>",
    "https://example.com/path/to/page?query=1&b=%20x#frag mailto:a@b.c",
    "data:image/png;base64,iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg==",
    "\x00\x01\x02\x1b[31mred\x1b[0m\x7f",
    'def f(x: int) -> int:\n    """Docstring."""\n    return x ** 2  # comment\n',
    'fn main() {\n    let v: Vec<u8> = vec![1, 2, 3];\n    println!("{:?}", v);\n}\n',
    "SELECT id, name FROM users WHERE email LIKE '%@example.com' ORDER BY id DESC LIMIT 10;",
    '{"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}], "stream": true}',
    '<html><body><div class="a">&amp; &lt;tag&gt; &#x1F600;</div></body></html>',
    '#include <stdio.h>\nint main(void){printf("%d\\n",42);return 0;}',
    "    indented\n        more indented\n\t\tmixed\n",
    "camelCaseIdentifier snake_case_identifier SCREAMING_CASE kebab-case-id",
    "!!!???...,,,;;;:::---___===+++***&&&^^^%%%$$$###@@@",
    "'''\"\"\"```~~~|||\\\\\\///",
]

FRAGMENTS = [
    "the",
    "OneFlow",
    "gateway",
    "routes",
    "requests",
    "token",
    "цена",
    "кредиты",
    "模型",
    "価格",
    "가격",
    "🚀",
    "✨",
    "é",
    "ß",
    "Ω",
    "ç",
    "42",
    "3.14",
    "1e10",
    "(",
    ")",
    "{",
    "}",
    "[",
    "]",
    "<",
    ">",
    "=>",
    "->",
    "::",
    "//",
    "/*",
    "*/",
    "#",
    "@",
    "$",
    "%",
    "&&",
    "||",
    "'s",
    "'ll",
    "n't",
    "\u0301",
    "\u200d",
    "\ufe0f",
    "\t",
    "\n",
    "\r\n",
    "  ",
    "   ",
    "def",
    "class",
    "return",
    "SELECT",
    "null",
    "true",
    "https://",
    ".com",
    "_",
    "-",
    "—",
]

RANGES = [
    (0x20, 0x7E),
    (0xA0, 0x24F),
    (0x370, 0x3FF),
    (0x400, 0x4FF),
    (0x590, 0x6FF),
    (0x900, 0x97F),
    (0xE00, 0xE7F),
    (0x3040, 0x30FF),
    (0x4E00, 0x9FFF),
    (0xAC00, 0xD7A3),
    (0x1F300, 0x1FAFF),
    (0x1D400, 0x1D7FF),
    (0x2000, 0x206F),
    (0xFE00, 0xFE0F),
]

PARAGRAPH = (
    "OneFlow AI is a pricing and routing layer for AI models. It chooses the model, keeps "
    "answering when providers fail, and charges exactly for what was used. "
)


def build_corpus() -> list[str]:
    """At least 200 varied texts, the same on every run."""
    rng = random.Random(20261126)
    texts = list(FIXED_TEXTS)
    for _ in range(120):  # fragment soups: code, prose, punctuation and scripts mixed
        count = rng.randint(1, 60)
        texts.append(rng.choice(["", " ", "\n"]).join(rng.choice(FRAGMENTS) for _ in range(count)))
    for _ in range(80):  # random code points from many scripts
        length = rng.randint(1, 200)
        text = []
        for _ in range(length):
            low, high = rng.choice(RANGES)
            char = chr(rng.randint(low, high))
            text.append(char)
        texts.append("".join(text))
    for _ in range(20):  # whitespace runs around words
        texts.append("".join(rng.choice([" ", "\t", "\n", "\r\n", "x", "  y"]) for _ in range(300)))
    for index in range(8):  # long documents, 20-100 KB
        paragraphs = [PARAGRAPH * rng.randint(1, 5) for _ in range(40 * (index + 1))]
        texts.append("\n\n".join(paragraphs) + "\n" + "\n".join(FIXED_TEXTS))
    return texts


@pytest.fixture(scope="session")
def corpus() -> list[str]:
    return build_corpus()
