"""The provider interface: a small protocol plus optional capabilities.

A provider adapter implements `Provider` and whichever capability protocols it supports; the
registry checks capabilities when an adapter is registered, so no adapter carries stub methods.
Chat is the provider engine's `ChatProvider` (`engine.py`) running the provider's wire
transforms (`openai.py`, `anthropic.py`; any OpenAI-compatible API by configuration,
`compatible.py`); images and speech are methods of the provider's module (`openai.py`,
`stability.py`, `elevenlabs.py`) over the same upstream client.

Adapters raise only `oneflow_ai.errors.ProviderError` subclasses for upstream failures (auth,
rate-limited, unavailable/overloaded, bad request, content filtered, timeout), with
`retry_after` taken from the provider's headers; the resilience and routing layers decide on
that taxonomy alone.

`model` arguments are the model's catalog id (aliases resolved), which is also the id the
provider is called with; an adapter passes it on as `UpstreamRequest.model`, which names the
model in errors and keys its circuit breaker.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Protocol, runtime_checkable

from oneflow_ai.domain.chat import ChatRequest, ChatResponse, StreamEvent
from oneflow_ai.domain.embeddings import EmbeddingRequest, EmbeddingResponse
from oneflow_ai.domain.media import ImageRequest, ImageResponse, SpeechRequest, SpeechResponse
from oneflow_ai.domain.transcription import TranscriptionRequest, TranscriptionResponse

__all__ = [
    "ChatCapable",
    "EmbeddingCapable",
    "ImageCapable",
    "Provider",
    "SpeechCapable",
    "TranscriptionCapable",
]


@runtime_checkable
class Provider(Protocol):
    name: str

    async def aclose(self) -> None:
        """Release pooled connections (called once at shutdown)."""
        ...


@runtime_checkable
class ChatCapable(Protocol):
    async def chat(self, request: ChatRequest, model: str) -> ChatResponse: ...

    def stream_chat(self, request: ChatRequest, model: str) -> AsyncIterator[list[StreamEvent]]:
        """Events of a streamed answer, in batches as they arrive (one batch per network read,
        never empty). An upstream failure before the first batch raises from the first
        `__anext__`, so the caller can still fall back to another model; a failure later
        raises from the `__anext__` after the last good batch."""
        ...


@runtime_checkable
class ImageCapable(Protocol):
    async def generate_image(self, request: ImageRequest, model: str) -> ImageResponse: ...


@runtime_checkable
class SpeechCapable(Protocol):
    async def synthesize_speech(self, request: SpeechRequest, model: str) -> SpeechResponse: ...


@runtime_checkable
class EmbeddingCapable(Protocol):
    async def embed(self, request: EmbeddingRequest, model: str) -> EmbeddingResponse: ...


@runtime_checkable
class TranscriptionCapable(Protocol):
    async def transcribe(
        self, request: TranscriptionRequest, model: str
    ) -> TranscriptionResponse: ...
