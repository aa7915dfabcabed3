"""Prices of embedding and transcription models, and the catalog rules that make them."""

from __future__ import annotations

from decimal import Decimal

import pytest
from pydantic import ValidationError

from oneflow_ai.billing.errors import PricingError
from oneflow_ai.billing.pricing import PricingEngine
from oneflow_ai.catalog.schema import ModelEntry
from oneflow_ai.domain.usage import Usage

ENGINE = PricingEngine()


def test_embeddings_bill_input_tokens_only() -> None:
    cost = ENGINE.price("text-embedding-3-large", Usage(input_tokens=1_000_000))
    assert cost.usd == Decimal("0.13") and [i.kind for i in cost.line_items] == ["input"]
    assert ENGINE.price("text-embedding-ada-002", Usage(input_tokens=7)).micro_credits == 70
    with pytest.raises(PricingError):
        ENGINE.price("text-embedding-3-small", Usage(output_tokens=1))
    worst = ENGINE.max_cost("text-embedding-3-small", 500, 4096)
    assert worst.micro_credits == 1_000 and worst.estimated  # no output tokens reserved


def test_transcription_bills_seconds_at_the_price_per_minute() -> None:
    cost = ENGINE.price("gpt-4o-mini-transcribe", Usage(audio_seconds=61))
    (line,) = cost.line_items
    assert (line.kind, line.quantity, line.per, line.unit_usd) == (
        "audio_seconds",
        61,
        60,
        Decimal("0.003"),
    )
    assert line.exact_usd == Decimal("0.00305") and cost.micro_credits == 305_000
    assert ENGINE.max_cost("whisper-1", audio_seconds=600).credits == Decimal("6")
    with pytest.raises(PricingError):
        ENGINE.price("whisper-1", Usage(input_tokens=10))


BASE: dict[str, object] = {"provider": "openai", "quality": 0.5, "latency": {"ttft_ms": 10}}


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"modality": "embedding", "tokenizer": "cl100k_base", "context_window": 10}, "dimensions"),
        ({"modality": "embedding", "dimensions": 8, "context_window": 10}, "tokenizer"),
        (
            {
                "modality": "embedding",
                "dimensions": 8,
                "context_window": 10,
                "tokenizer": "cl100k_base",
                "pricing": {"input_per_mtok": "1", "output_per_mtok": "1"},
                "price_source": "x",
            },
            "pricing.output_per_mtok",
        ),
        (
            {"modality": "transcription", "pricing": {"input_per_mtok": "1"}, "price_source": "x"},
            "pricing.per_minute",
        ),
        ({"modality": "transcription", "dimensions": 8, "free": True}, "dimensions"),
        ({"modality": "image", "per_minute": "1"}, "per_minute"),
    ],
)
def test_the_catalog_refuses_entries_that_do_not_fit(
    fields: dict[str, object], message: str
) -> None:
    with pytest.raises(ValidationError) as refused:
        ModelEntry(id="m", **{**BASE, **fields})  # type: ignore[arg-type]
    assert message in str(refused.value)
