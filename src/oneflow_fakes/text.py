"""Deterministic answers: the reply text, its chunks, token counts and tool calls.

The reply to a prompt is `Echo:` followed by the prompt's words, then a fixed filler, `N`
words in all (`N` = the server's `reply_words`, or a fault's). Each word is one stream chunk
(with its leading space, as real tokenizers split text). `max_tokens` cuts the answer; stop
sequences end it where they first occur.

Tool calls: when a request offers tools and the last user turn says `call <tool name>` (case
of `call` ignored), the answer calls that tool; `call <name> with {...json...}` fixes the
arguments, otherwise they are built from the tool's JSON schema. Several `call` phrases make
parallel calls. A forcing `tool_choice` calls the named (or first) tool without a phrase.
"""

from __future__ import annotations

import functools
import math
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import orjson

__all__ = [
    "Completion",
    "ToolCallPlan",
    "compose",
    "count_tokens",
    "plan_tool_calls",
    "schema_example",
    "text_of",
]

_TOKEN_RE = re.compile(r"\w+|[^\w\s]")
_WORD_RE = re.compile(r"\S+")
_CALL_RE = re.compile(r"\bcall\s+([A-Za-z0-9_.\-]+)", re.IGNORECASE)
_FILLER = (
    "this", "answer", "comes", "from", "the", "OneFlow", "fake", "provider", "and", "grows",
    "one", "word", "at", "a", "time", "so", "that", "streams", "carry", "realistic", "chunks",
    "and", "usage",
)  # fmt: skip
_JSON = orjson.loads


def count_tokens(text: str) -> int:
    """A deterministic token estimate: a word of `k` characters is `ceil(k/4)` tokens, each
    punctuation mark one token (close to the real tokenizers on English text)."""
    total = 0
    for match in _TOKEN_RE.finditer(text):
        size = match.end() - match.start()
        total += 1 if size <= 4 else math.ceil(size / 4)
    return total


@dataclass(frozen=True, slots=True)
class Completion:
    """An answer cut into chunks, with its token count and why it ended.

    `finish` is `stop`, `length` or `stop_sequence` (then `stop_sequence` is the one met)."""

    chunks: tuple[str, ...]
    tokens: int
    finish: str
    stop_sequence: str | None = None

    @property
    def text(self) -> str:
        return "".join(self.chunks)


def _reply_words(source: str, words: int) -> list[str]:
    prompt = _WORD_RE.findall(source)[: max(words - 1, 0)]
    out = ["Echo:", *prompt]
    filler = 0
    while len(out) < words:
        out.append(_FILLER[filler % len(_FILLER)])
        filler += 1
    out = out[:words]
    if not out[-1].endswith((".", "!", "?")):
        out[-1] += "."
    return out


def compose(
    source: str,
    *,
    words: int,
    max_tokens: int | None,
    stop: Sequence[str] = (),
    counter: Callable[[str], int] = count_tokens,
) -> Completion:
    """The reply to `source`, cut by `max_tokens` and the first stop sequence met."""
    return _compose(source, words, max_tokens, tuple(stop), counter)


@functools.lru_cache(maxsize=4096)
def _compose(
    source: str,
    words: int,
    max_tokens: int | None,
    stop: tuple[str, ...],
    counter: Callable[[str], int],
) -> Completion:
    pieces = [w if i == 0 else " " + w for i, w in enumerate(_reply_words(source, words))]
    finish, matched = "stop", None
    if stop:
        text = "".join(pieces)
        cut, matched = len(text), None
        for sequence in stop:
            at = text.find(sequence) if sequence else -1
            if 0 <= at < cut:
                cut, matched = at, sequence
        if matched is not None:
            pieces = _cut_chars(pieces, cut)
            finish = "stop_sequence"
    chunks: list[str] = []
    tokens = 0
    for piece in pieces:
        cost = max(counter(piece), 1)
        if max_tokens is not None and tokens + cost > max_tokens:
            room = max_tokens - tokens
            if room > 0:
                chunks.append(piece[: room * 4])
                tokens += room
            return Completion(tuple(chunks), tokens, "length")
        chunks.append(piece)
        tokens += cost
    return Completion(tuple(chunks), tokens, finish, matched)


def _cut_chars(pieces: list[str], cut: int) -> list[str]:
    out: list[str] = []
    used = 0
    for piece in pieces:
        if used + len(piece) <= cut:
            out.append(piece)
            used += len(piece)
            continue
        if cut > used:
            out.append(piece[: cut - used])
        break
    return out


# ---- tool calls -------------------------------------------------------------------------


@dataclass(slots=True)
class ToolCallPlan:
    name: str
    arguments: dict[str, object] = field(default_factory=dict)

    @property
    def arguments_json(self) -> str:
        return orjson.dumps(self.arguments).decode()


def plan_tool_calls(
    prompt: str,
    schemas: Mapping[str, Mapping[str, object]],
    *,
    forced: str | None = None,
    forbidden: bool = False,
) -> list[ToolCallPlan]:
    """The tool calls an answer makes. `schemas` maps each offered tool to its parameters'
    JSON schema; `forced` is the tool a `tool_choice` names ("" for "any tool")."""
    if forbidden or not schemas:
        return []
    plans: list[ToolCallPlan] = []
    for match in _CALL_RE.finditer(prompt):
        name = match.group(1).rstrip(".,;:!?")
        if name not in schemas:
            continue
        arguments = _explicit_arguments(prompt, match.end())
        if arguments is None:
            arguments = schema_example(schemas[name])
        plans.append(ToolCallPlan(name, arguments))
    if forced is not None:
        name = forced or next(iter(schemas))
        plans = [p for p in plans if p.name == name] if forced else plans
        if not plans and name in schemas:
            plans = [ToolCallPlan(name, schema_example(schemas[name]))]
    return plans


def _explicit_arguments(prompt: str, end: int) -> dict[str, object] | None:
    rest = prompt[end:]
    stripped = rest.lstrip()
    if not stripped.lower().startswith("with"):
        return None
    start = rest.find("{")
    if start < 0 or rest[:start].strip().lower() != "with":
        return None
    depth = 0
    for i in range(start, len(rest)):
        if rest[i] == "{":
            depth += 1
        elif rest[i] == "}":
            depth -= 1
            if depth == 0:
                try:
                    value = _JSON(rest[start : i + 1])
                except orjson.JSONDecodeError:
                    return None
                return value if isinstance(value, dict) else None
    return None


def schema_example(schema: Mapping[str, object]) -> dict[str, object]:
    """Arguments that satisfy a JSON schema of type object: every required property (all
    properties when none is required) gets an example value of its type."""
    value = _example(schema, "value")
    return value if isinstance(value, dict) else {}


def _example(schema: object, name: str) -> object:
    if not isinstance(schema, Mapping):
        return "example"
    enum = schema.get("enum")
    if isinstance(enum, list) and enum:
        return enum[0]
    if "const" in schema:
        return schema["const"]
    kind = schema.get("type")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), "string")
    if kind == "object" or (kind is None and "properties" in schema):
        properties = schema.get("properties")
        if not isinstance(properties, Mapping):
            return {}
        required = schema.get("required")
        names = [n for n in required if n in properties] if isinstance(required, list) else []
        return {n: _example(properties[n], n) for n in (names or list(properties))}
    if kind == "array":
        return [_example(schema.get("items"), name)]
    if kind == "integer":
        return 1
    if kind == "number":
        return 1.5
    if kind == "boolean":
        return True
    if kind == "null":
        return None
    return f"example {name}"


def text_of(content: object) -> str:
    """The text of a message's content: a string, or the `text` parts of a list of parts
    (OpenAI's content parts and Anthropic's content blocks alike)."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return " ".join(
            str(part.get("text", ""))
            for part in content
            if isinstance(part, dict) and part.get("type") == "text"
        )
    return ""
