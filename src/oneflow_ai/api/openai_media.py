"""OpenAI's Images and Audio speech dialects at the edge: requests in, answers out."""

from __future__ import annotations

import re
from typing import Any

from oneflow_ai.api.validation import Fields, invalid
from oneflow_ai.domain.media import ImageRequest, ImageResponse, SpeechRequest

__all__ = ["parse_image_request", "parse_speech_request", "render_images"]

_SIZE = re.compile(r"^[1-9][0-9]{1,4}x[1-9][0-9]{1,4}$")
SPEECH_FORMATS = ("mp3", "opus", "aac", "flac", "wav", "pcm")


def parse_image_request(body: dict[str, Any]) -> ImageRequest:
    """`POST /v1/images/generations`; `model` defaults to `auto` (OneFlow chooses).
    `negative_prompt` and `seed` are OneFlow extensions for models that take them."""
    fields = Fields(body)
    size = fields.opt_str("size")
    if size is not None and not _SIZE.match(size):
        raise invalid("size", "must look like 1024x1024")
    response_format = fields.opt_str("response_format", choices=("url", "b64_json")) or "url"
    return ImageRequest(
        model=fields.opt_str("model") or "auto",
        prompt=fields.req_str("prompt", max_length=10_000),
        n=fields.opt_int("n", minimum=1, maximum=10) or 1,
        size=size,
        quality=fields.opt_str("quality", choices=("standard", "hd")),
        style=fields.opt_str("style", choices=("vivid", "natural")),
        response_format="b64_json" if response_format == "b64_json" else "url",
        negative_prompt=fields.opt_str("negative_prompt"),
        seed=fields.opt_int("seed", minimum=0, maximum=4_294_967_294),
        user=fields.opt_str("user"),
    )


def render_images(response: ImageResponse) -> dict[str, Any]:
    data = []
    for image in response.images:
        item: dict[str, Any] = {}
        if image.url is not None:
            item["url"] = image.url
        if image.b64_json is not None:
            item["b64_json"] = image.b64_json
        if image.revised_prompt is not None:
            item["revised_prompt"] = image.revised_prompt
        data.append(item)
    return {"created": response.created, "data": data}


def parse_speech_request(body: dict[str, Any]) -> SpeechRequest:
    """`POST /v1/audio/speech`: `voice` is an OpenAI voice name, a provider voice id, or
    `{"id": ...}`."""
    fields = Fields(body)
    voice_value = body.get("voice")
    if isinstance(voice_value, dict):
        voice = Fields(voice_value, "voice").req_str("id")
    else:
        voice = fields.req_str("voice")
    if not voice.strip():
        raise invalid("voice", "must not be empty")
    return SpeechRequest(
        model=fields.req_str("model"),
        input=fields.req_str("input", max_length=4096),
        voice=voice,
        response_format=fields.opt_str("response_format", choices=SPEECH_FORMATS) or "mp3",
        speed=fields.opt_number("speed", minimum=0.25, maximum=4.0),
    )
