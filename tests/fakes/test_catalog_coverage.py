"""Every model in the packaged catalog is one the fake providers serve, under its own id."""

from __future__ import annotations

import pytest

from oneflow_ai.catalog import packaged_catalog
from oneflow_ai.catalog.schema import ModelEntry
from oneflow_fakes.models import (
    ANTHROPIC_MODELS,
    ELEVENLABS_MODELS,
    OPENAI_CHAT_MODELS,
    OPENAI_EMBEDDING_MODELS,
    OPENAI_IMAGE_MODELS,
    OPENAI_TRANSCRIPTION_MODELS,
    STABILITY_V1_ENGINES,
    STABILITY_V2_MODELS,
)

SERVED = {
    ("openai", "text"): set(OPENAI_CHAT_MODELS),
    ("openai", "image"): set(OPENAI_IMAGE_MODELS),
    ("openai", "embedding"): set(OPENAI_EMBEDDING_MODELS),
    ("openai", "transcription"): set(OPENAI_TRANSCRIPTION_MODELS),
    ("anthropic", "text"): set(ANTHROPIC_MODELS),
    ("stability", "image"): set(STABILITY_V1_ENGINES) | set(STABILITY_V2_MODELS),
    ("elevenlabs", "audio"): set(ELEVENLABS_MODELS),
}


@pytest.mark.parametrize("entry", packaged_catalog().models, ids=lambda e: e.id)
def test_catalog_model_is_served(entry: ModelEntry) -> None:
    assert entry.id in SERVED[(entry.provider, entry.modality)]
