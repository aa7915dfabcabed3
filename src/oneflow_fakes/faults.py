"""Fault injection: what a request should suffer, chosen per request without a restart.

A `Fault` comes from two places, merged field by field (headers win):
- rules installed through the control plane (`POST /_fake/faults`) or `FakeProviders.add_fault`,
  matched by provider, model (a glob), endpoint and streaming, optionally only `times` times
  and with a seeded `probability`; the first rule that matches and fires applies;
- `x-fake-*` request headers (see `HEADERS`), for callers that talk to the fakes directly.
"""

from __future__ import annotations

import fnmatch
import itertools
import random
import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, fields
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

__all__ = ["HEADERS", "Fault", "FaultBook", "FaultError", "FaultRule", "fault_from_headers"]

Provider = Literal["openai", "anthropic", "stability", "elevenlabs"]
Endpoint = Literal["chat", "responses", "images", "speech", "models"]


class FaultError(ValueError):
    """A fault rule or `x-fake-*` header that cannot be understood."""


@dataclass(slots=True)
class Fault:
    """What happens to one request. Every field None/False means: answer normally."""

    status: int | None = None  # answer with this HTTP status and the provider's error body
    error_type: str | None = None  # the provider's error discriminator (see errors.py)
    message: str | None = None  # replaces the error's message
    body: dict[str, object] | None = None  # sent verbatim as the error body
    retry_after: float | None = None  # seconds, in a `retry-after` header
    latency_ms: float | None = None  # before the response headers
    ttft_ms: float | None = None  # before the first content chunk
    chunk_delay_ms: float | None = None  # between content chunks
    drop_after_chunks: int | None = None  # cut the connection after N content chunks
    error_after_chunks: int | None = None  # in-stream error event after N content chunks
    timeout: bool = False  # hang (up to the server's hang_seconds) and never answer
    reply_words: int | None = None  # length of the answer, in words

    def merged(self, other: Fault | None) -> Fault:
        """This fault with every field `other` sets taken from `other`."""
        if other is None:
            return self
        out = Fault()
        for f in _FIELDS:
            mine, theirs = getattr(self, f), getattr(other, f)
            setattr(out, f, mine if _unset(theirs) else theirs)
        return out

    def describe(self) -> dict[str, object]:
        return {f: getattr(self, f) for f in _FIELDS if not _unset(getattr(self, f))}

    @property
    def active(self) -> bool:
        return bool(self.describe())


_FIELDS = tuple(f.name for f in fields(Fault))


def _unset(value: object) -> bool:
    return value is None or value is False


# header name -> (Fault field, parser)
HEADERS: dict[str, tuple[str, type]] = {
    "x-fake-status": ("status", int),
    "x-fake-error-type": ("error_type", str),
    "x-fake-error-message": ("message", str),
    "x-fake-retry-after": ("retry_after", float),
    "x-fake-latency-ms": ("latency_ms", float),
    "x-fake-ttft-ms": ("ttft_ms", float),
    "x-fake-chunk-delay-ms": ("chunk_delay_ms", float),
    "x-fake-drop-after-chunks": ("drop_after_chunks", int),
    "x-fake-error-after-chunks": ("error_after_chunks", int),
    "x-fake-timeout": ("timeout", bool),
    "x-fake-reply-words": ("reply_words", int),
}


def fault_from_headers(headers: Iterable[tuple[str, str]]) -> Fault | None:
    """The fault asked for by `x-fake-*` headers, or None when there is none."""
    fault: Fault | None = None
    for name, value in headers:
        if name[:7].lower() != "x-fake-":
            continue
        spec = HEADERS.get(name.lower())
        if spec is None:
            raise FaultError(f"unknown fault header {name!r}; known: {', '.join(HEADERS)}")
        field_name, parser = spec
        fault = fault or Fault()
        try:
            parsed: object
            if parser is bool:
                parsed = value.strip().lower() in ("1", "true", "yes", "on")
            else:
                parsed = parser(value.strip())
        except ValueError:
            raise FaultError(f"{name}: {value!r} is not a valid {parser.__name__}") from None
        setattr(fault, field_name, parsed)
    if fault is not None:
        _check(fault)
    return fault


def _check(fault: Fault) -> None:
    if fault.status is not None and not 100 <= fault.status <= 599:
        raise FaultError(f"status {fault.status} is not an HTTP status")
    for name in ("retry_after", "latency_ms", "ttft_ms", "chunk_delay_ms"):
        value = getattr(fault, name)
        if value is not None and value < 0:
            raise FaultError(f"{name} must not be negative")
    for name in ("drop_after_chunks", "error_after_chunks"):
        value = getattr(fault, name)
        if value is not None and value < 0:
            raise FaultError(f"{name} must not be negative")
    if fault.reply_words is not None and fault.reply_words < 1:
        raise FaultError("reply_words must be at least 1")


class FaultRule(BaseModel):
    """A fault rule as JSON: match fields, how often, and the fault's fields."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    provider: Provider | None = None
    model: str | None = Field(default=None, description="exact id or glob, e.g. 'claude-*'")
    endpoint: Endpoint | None = None
    stream: bool | None = None
    times: int | None = Field(default=None, ge=1, description="fire this many times, then stop")
    probability: float = Field(default=1.0, ge=0.0, le=1.0)
    seed: int | None = None

    status: int | None = Field(default=None, ge=100, le=599)
    error_type: str | None = None
    message: str | None = None
    body: dict[str, object] | None = None
    retry_after: float | None = Field(default=None, ge=0)
    latency_ms: float | None = Field(default=None, ge=0)
    ttft_ms: float | None = Field(default=None, ge=0)
    chunk_delay_ms: float | None = Field(default=None, ge=0)
    drop_after_chunks: int | None = Field(default=None, ge=0)
    error_after_chunks: int | None = Field(default=None, ge=0)
    timeout: bool = False
    reply_words: int | None = Field(default=None, ge=1)

    def fault(self) -> Fault:
        return Fault(**{f: getattr(self, f) for f in _FIELDS})


class _Installed:
    __slots__ = ("hits", "id", "random", "remaining", "rule")

    def __init__(self, rule_id: str, rule: FaultRule) -> None:
        self.id = rule_id
        self.rule = rule
        self.remaining = rule.times
        self.hits = 0
        self.random = random.Random(rule.seed)  # reproducible faults, not security  # nosec B311

    def matches(self, provider: str, endpoint: str, model: str, stream: bool) -> bool:
        rule = self.rule
        if self.remaining == 0:
            return False
        if rule.provider is not None and rule.provider != provider:
            return False
        if rule.endpoint is not None and rule.endpoint != endpoint:
            return False
        if rule.stream is not None and rule.stream != stream:
            return False
        return rule.model is None or fnmatch.fnmatchcase(model, rule.model)

    def view(self) -> dict[str, object]:
        return {
            "id": self.id,
            **self.rule.model_dump(exclude_defaults=True),
            "remaining": self.remaining,
            "hits": self.hits,
        }


class FaultBook:
    """The installed rules of one fake server (thread-safe: tests add rules from their own
    thread while the server's loop reads them)."""

    def __init__(self) -> None:
        self._rules: list[_Installed] = []
        self._lock = threading.Lock()
        self._ids = itertools.count(1)

    def add(self, rule: FaultRule) -> str:
        with self._lock:
            installed = _Installed(f"rule_{next(self._ids)}", rule)
            self._rules.append(installed)
            return installed.id

    def add_json(self, payload: object) -> list[str]:
        """Install rules from JSON: one rule object, a list of them, or `{"rules": [...]}`."""
        if isinstance(payload, Mapping) and set(payload) == {"rules"}:
            payload = payload["rules"]
        items = payload if isinstance(payload, list) else [payload]
        rules = [FaultRule.model_validate(item) for item in items]
        return [self.add(rule) for rule in rules]

    def remove(self, rule_id: str) -> bool:
        with self._lock:
            before = len(self._rules)
            self._rules = [r for r in self._rules if r.id != rule_id]
            return len(self._rules) < before

    def clear(self) -> None:
        with self._lock:
            self._rules = []

    def rules(self) -> list[dict[str, object]]:
        with self._lock:
            return [r.view() for r in self._rules]

    def match(self, provider: str, endpoint: str, model: str, stream: bool) -> Fault | None:
        """The fault of the first rule that matches and fires, counting it as used."""
        if not self._rules:
            return None
        with self._lock:
            for installed in self._rules:
                if not installed.matches(provider, endpoint, model, stream):
                    continue
                probability = installed.rule.probability
                if probability < 1.0 and installed.random.random() >= probability:
                    continue
                installed.hits += 1
                if installed.remaining is not None:
                    installed.remaining -= 1
                return installed.rule.fault()
        return None
