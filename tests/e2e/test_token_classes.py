"""Cached, cache-write and reasoning tokens, priced exactly end to end.

Through the running gateway and the fake providers (asked for the token classes by a prompt
marker, docs/fake-providers.md), each provider's answer, plain and streamed, in its own dialect
and translated into the other: the caller sees the classes in its dialect's fields, the charge
is the sum of the classes each at its catalog price, and `/api/v1/usage`, its CSV and the
request log say the same.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from decimal import ROUND_HALF_EVEN, Decimal

import httpx

from oneflow_ai.catalog import packaged_catalog
from tests.support.billing_world import BillingWorld, billing_world

CATALOG = packaged_catalog()
#: A prompt long enough to hold the cached parts (about 300 tokens).
LONG = " ".join(f"word{i}" for i in range(300))
OPENAI_MODEL = "gpt-4.1"
CLAUDE_MODEL = "claude-sonnet-5-5"
OPENAI_MARKER = "[fake-usage cached=128 reasoning=40]"
CLAUDE_MARKER = "[fake-usage cached=100 write_5m=60 write_1h=30]"


@dataclass(frozen=True)
class Classes:
    input: int
    output: int
    cached: int = 0
    write_5m: int = 0
    write_1h: int = 0
    reasoning: int = 0

    def micro_credits(self, model: str) -> int:
        """The charge as this test works it out: each class at its price, rounded once."""
        pricing = CATALOG.get(model).pricing
        assert pricing is not None and pricing.input_per_mtok is not None
        assert pricing.output_per_mtok is not None and pricing.cached_input_per_mtok is not None
        plain = self.input - self.cached - self.write_5m - self.write_1h
        lines = [
            (plain, pricing.input_per_mtok),
            (self.cached, pricing.cached_input_per_mtok),
            (self.write_5m, pricing.cache_write_5m_per_mtok or pricing.input_per_mtok),
            (self.write_1h, pricing.cache_write_1h_per_mtok or pricing.input_per_mtok),
            (self.output - self.reasoning, pricing.output_per_mtok),
            (self.reasoning, pricing.output_per_mtok),
        ]
        # USD per 1M tokens x tokens x 100 = micro-credits (1 USD = 10^8 micro-credits).
        return sum(
            int((Decimal(q) * price * 100).quantize(Decimal(1), ROUND_HALF_EVEN))
            for q, price in lines
        )


def _openai_classes(usage: dict[str, object]) -> Classes:
    prompt = usage["prompt_tokens_details"]
    completion = usage["completion_tokens_details"]
    assert isinstance(prompt, dict) and isinstance(completion, dict)
    return Classes(
        input=int(str(usage["prompt_tokens"])),
        output=int(str(usage["completion_tokens"])),
        cached=int(prompt["cached_tokens"]),
        reasoning=int(completion["reasoning_tokens"]),
    )


def _anthropic_classes(usage: dict[str, object]) -> Classes:
    creation = usage.get("cache_creation") or {}
    assert isinstance(creation, dict)
    read = int(str(usage.get("cache_read_input_tokens") or 0))
    written = int(str(usage.get("cache_creation_input_tokens") or 0))
    return Classes(
        input=int(str(usage["input_tokens"])) + read + written,
        output=int(str(usage["output_tokens"])),
        cached=read,
        write_5m=int(creation.get("ephemeral_5m_input_tokens") or 0),
        write_1h=int(creation.get("ephemeral_1h_input_tokens") or 0),
    )


def _sse_usage(response: httpx.Response, dialect: str) -> tuple[dict[str, object], str]:
    """The usage a stream ended with, and its `oneflow.credits`."""
    import orjson

    found: dict[str, object] = {}
    credits = ""
    start: dict[str, object] = {}
    for line in response.text.splitlines():
        if not line.startswith("data: ") or line == "data: [DONE]":
            continue
        data = orjson.loads(line[6:])
        if dialect == "openai" and data.get("usage"):
            found, credits = data["usage"], data["oneflow"]["credits"]
        if dialect == "anthropic" and data.get("type") == "message_start":
            start = data["message"]["usage"]
        if dialect == "anthropic" and data.get("type") == "message_delta":
            found, credits = {**start, **data["usage"]}, data["oneflow"]["credits"]
    assert found, response.text[-500:]
    return found, credits


def _ask(
    world: BillingWorld, key: str, dialect: str, model: str, marker: str, stream: bool
) -> tuple[Classes, Decimal, str]:
    """One request; the token classes the caller was told, the credits, the request id."""
    body: dict[str, object] = {
        "model": model,
        "max_tokens": 60,
        "messages": [{"role": "user", "content": f"{marker} {LONG}"}],
    }
    if stream:
        body["stream"] = True
        if dialect == "openai":
            body["stream_options"] = {"include_usage": True}
    path = "/v1/chat/completions" if dialect == "openai" else "/v1/messages"
    response = world.admin.post(path, json=body, headers={"Authorization": f"Bearer {key}"})
    assert response.status_code == 200, response.text
    request_id = response.headers["x-oneflow-request-id"]
    if stream:
        usage, credits = _sse_usage(response, dialect)
    else:
        usage = response.json()["usage"]
        credits = response.headers["x-oneflow-credits"]
    classes = _openai_classes(usage) if dialect == "openai" else _anthropic_classes(usage)
    return classes, Decimal(credits), request_id


CASES = [
    # (dialect, model, marker, stream)
    ("openai", OPENAI_MODEL, OPENAI_MARKER, False),
    ("openai", OPENAI_MODEL, OPENAI_MARKER, True),
    ("anthropic", CLAUDE_MODEL, CLAUDE_MARKER, False),
    ("anthropic", CLAUDE_MODEL, CLAUDE_MARKER, True),
    # translated: a Claude answer in OpenAI's shape, an OpenAI answer in Anthropic's
    ("openai", CLAUDE_MODEL, CLAUDE_MARKER, False),
    ("openai", CLAUDE_MODEL, CLAUDE_MARKER, True),
    ("anthropic", OPENAI_MODEL, OPENAI_MARKER, False),
    ("anthropic", OPENAI_MODEL, OPENAI_MARKER, True),
]


async def test_token_classes_are_priced_exactly_and_reported_alike(database_url: str) -> None:
    with billing_world(database_url, reply_words=30) as world:
        project, key = world.project()
        told: dict[str, tuple[str, str, Classes, Decimal]] = {}
        for dialect, model, marker, stream in CASES:
            classes, credits, request_id = _ask(world, key, dialect, model, marker, stream)
            told[request_id] = (dialect, model, classes, credits)

        # What each caller was told: the classes in its own dialect's fields.
        for dialect, model, classes, _ in told.values():
            if model == OPENAI_MODEL:
                assert classes.cached == 128
                # An OpenAI answer has no cache writes; its reasoning is within the output
                # (Anthropic's shape names no reasoning part: only OpenAI's shows it).
                assert (classes.write_5m, classes.write_1h) == (0, 0)
                assert classes.reasoning == (40 if dialect == "openai" else 0)
            else:
                assert classes.cached == 100 and classes.reasoning == 0
                if dialect == "anthropic":
                    assert (classes.write_5m, classes.write_1h) == (60, 30)

        # The ledger's charge of each request is the sum of its classes at their prices.
        charges = {c.request_id: c for c in await world.charges(project)}
        assert set(charges) == set(told)
        rows = {
            row["id"]: row
            for row in world.admin_call("GET", "/api/v1/requests", project=project).json()["data"]
        }
        for request_id, (dialect, model, classes, credits) in told.items():
            row = rows[request_id]
            exact = Classes(
                input=row["input_tokens"],
                output=row["output_tokens"],
                cached=row["cached_input_tokens"],
                write_5m=row["cache_write_5m_tokens"],
                write_1h=row["cache_write_1h_tokens"],
                reasoning=row["reasoning_tokens"],
            )
            expected_classes = (
                Classes(exact.input, exact.output, 128, 0, 0, 40)
                if model == OPENAI_MODEL
                else Classes(exact.input, exact.output, 100, 60, 30, 0)
            )
            assert exact == expected_classes, (dialect, model, row)
            assert (exact.input, exact.output) == (classes.input, classes.output)
            micro = exact.micro_credits(model)
            assert charges[request_id].micro_credits == micro, (dialect, model)
            assert credits == Decimal(micro) / 1_000_000
            assert Decimal(row["credits"]) == Decimal(micro) / 1_000_000

        # /api/v1/usage and its CSV: the classes and the money, summed per model.
        report = world.admin_call("GET", "/api/v1/usage", project=project, group_by="model").json()
        groups = {g["model"]: g for g in report["groups"]}
        for model in (OPENAI_MODEL, CLAUDE_MODEL):
            mine = [rows[r] for r, (_, m, _, _) in told.items() if m == model]
            group = groups[model]
            for name in (
                "input_tokens",
                "output_tokens",
                "cached_input_tokens",
                "cache_write_5m_tokens",
                "cache_write_1h_tokens",
                "reasoning_tokens",
            ):
                assert group[name] == sum(r[name] for r in mine), (model, name)
            assert Decimal(group["credits"]) == sum(Decimal(r["credits"]) for r in mine)
        exported = world.admin_call(
            "GET", "/api/v1/usage.csv", project=project, group_by="model"
        ).text
        table = {row["model"]: row for row in csv.DictReader(io.StringIO(exported))}
        for model, group in groups.items():
            for name in ("cached_input_tokens", "cache_write_5m_tokens", "reasoning_tokens"):
                assert int(table[model][name]) == group[name]
            assert Decimal(table[model]["credits"]) == Decimal(group["credits"])
