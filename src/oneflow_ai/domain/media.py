"""Provider-neutral image generation and speech synthesis."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from oneflow_ai.domain.usage import Usage

__all__ = [
    "GeneratedImage",
    "ImageRequest",
    "ImageResponse",
    "SpeechRequest",
    "SpeechResponse",
]


@dataclass(slots=True)
class ImageRequest:
    model: str
    prompt: str
    n: int = 1
    size: str | None = None  # "1024x1024"; providers map it to what they accept
    quality: str | None = None  # "standard" | "hd"
    style: str | None = None  # DALL·E 3: "vivid" | "natural"
    response_format: Literal["url", "b64_json"] = "url"
    negative_prompt: str | None = None
    seed: int | None = None
    user: str | None = None


@dataclass(slots=True)
class GeneratedImage:
    """One image: a URL the provider hosts, or the image itself base64-encoded."""

    url: str | None = None
    b64_json: str | None = None
    revised_prompt: str | None = None
    media_type: str = "image/png"


@dataclass(slots=True)
class ImageResponse:
    created: int
    images: list[GeneratedImage]
    usage: Usage  # images, image_size, image_quality
    model: str = ""


@dataclass(slots=True)
class SpeechRequest:
    model: str
    input: str
    voice: str  # an OpenAI voice name (mapped by configuration) or a provider voice id
    response_format: str = "mp3"  # mp3 | opus | aac | flac | wav | pcm
    speed: float | None = None


@dataclass(slots=True)
class SpeechResponse:
    audio: bytes
    content_type: str
    usage: Usage  # characters
    model: str = ""
    extra_headers: dict[str, str] = field(default_factory=dict)
