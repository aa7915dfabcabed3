"""Stability AI: SDXL through the v1 text-to-image API (JSON) and Stable Diffusion 3.5 through
the v2beta `stable-image/generate/sd3` API (multipart form), both answering in JSON.

OpenAI-style sizes map to what each API takes: SDXL's allowed dimensions, SD3's aspect ratios
(the closest by aspect). Stability returns the image itself, never a URL: a caller asking for
`url` gets a `data:` URL. One SD3 request makes one image, so `n` images are `n` concurrent
requests; SDXL makes `n` samples in one.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Mapping

import orjson

from oneflow_ai.domain.media import GeneratedImage, ImageRequest, ImageResponse
from oneflow_ai.domain.usage import Usage
from oneflow_ai.errors import ContentFilteredError, ProviderAuthError, ProviderError
from oneflow_ai.providers.engine import read_answer
from oneflow_ai.providers.errors import error_class, json_object, provider_error
from oneflow_ai.providers.spec import JSON_HEADERS, ProviderSpec
from oneflow_ai.providers.upstream import UpstreamClient, UpstreamRequest
from oneflow_ai.settings import Settings

__all__ = ["SPEC", "StabilityProvider", "sd3_aspect_ratio", "sdxl_dimensions", "stability_headers"]

NAME = "stability"
SD3_PATH = "/v2beta/stable-image/generate/sd3"

#: (width, height) that SDXL 1.0 accepts.
SDXL_DIMENSIONS = (
    (1024, 1024),
    (1152, 896),
    (896, 1152),
    (1216, 832),
    (832, 1216),
    (1344, 768),
    (768, 1344),
    (1536, 640),
    (640, 1536),
)
SD3_ASPECT_RATIOS = ("1:1", "16:9", "21:9", "2:3", "3:2", "4:5", "5:4", "9:16", "9:21")


def stability_headers(api_key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {api_key}", **JSON_HEADERS}


class StabilityProvider:
    """Images on Stability AI (implements `ImageCapable`)."""

    name: str = NAME

    def __init__(self, client: UpstreamClient) -> None:
        self._client = client

    async def aclose(self) -> None:
        await self._client.aclose()

    async def generate_image(self, request: ImageRequest, model: str) -> ImageResponse:
        if model.startswith("sd3"):
            images = await asyncio.gather(*(self._sd3(request, model) for _ in range(request.n)))
        else:
            images = await self._sdxl(request, model)
        return ImageResponse(
            created=int(time.time()),
            images=list(images),
            usage=Usage(images=len(images), image_size=request.size, image_quality=request.quality),
            model=model,
        )

    async def _sdxl(self, request: ImageRequest, model: str) -> list[GeneratedImage]:
        width, height = sdxl_dimensions(request.size)
        prompts: list[dict[str, object]] = [{"text": request.prompt, "weight": 1}]
        if request.negative_prompt:
            prompts.append({"text": request.negative_prompt, "weight": -1})
        body: dict[str, object] = {
            "text_prompts": prompts,
            "width": width,
            "height": height,
            "samples": request.n,
        }
        if request.seed is not None:
            body["seed"] = request.seed
        response = await self._client.send(
            UpstreamRequest(
                "POST",
                f"/v1/generation/{model}/text-to-image",
                map_error,
                body=orjson.dumps(body),
                model=model,
            )
        )

        def images(body: bytes) -> list[GeneratedImage]:
            artifacts = orjson.loads(body)["artifacts"]
            return [_image(a["base64"], a.get("finishReason"), request, model) for a in artifacts]

        return read_answer(NAME, model, response.body, images)

    async def _sd3(self, request: ImageRequest, model: str) -> GeneratedImage:
        fields = {
            "prompt": request.prompt,
            "model": model,
            "mode": "text-to-image",
            "aspect_ratio": sd3_aspect_ratio(request.size),
            "output_format": "png",
        }
        if request.negative_prompt and "turbo" not in model:
            fields["negative_prompt"] = request.negative_prompt
        if request.seed is not None:
            fields["seed"] = str(request.seed)
        body, content_type = multipart(fields)
        response = await self._client.send(
            UpstreamRequest(
                "POST",
                SD3_PATH,
                map_error,
                body=body,
                headers={"Content-Type": content_type},
                model=model,
            )
        )

        def image(body: bytes) -> GeneratedImage:
            data = orjson.loads(body)
            return _image(data["image"], data.get("finish_reason"), request, model)

        return read_answer(NAME, model, response.body, image)


def _image(b64: str, finish: object, request: ImageRequest, model: str) -> GeneratedImage:
    if finish == "CONTENT_FILTERED":
        raise ContentFilteredError(
            "stability: the image was filtered by the provider's content moderation",
            provider=NAME,
            model=model,
        )
    if finish not in (None, "SUCCESS"):
        raise ProviderError(f"stability: generation failed ({finish})", provider=NAME, model=model)
    if request.response_format == "url":
        return GeneratedImage(url=f"data:image/png;base64,{b64}")
    return GeneratedImage(b64_json=b64)


def _size(size: str | None) -> tuple[int, int]:
    if size:
        width, sep, height = size.lower().partition("x")
        if sep and width.isdigit() and height.isdigit() and int(width) and int(height):
            return int(width), int(height)
    return 1024, 1024


def sdxl_dimensions(size: str | None) -> tuple[int, int]:
    """The SDXL dimensions closest in aspect to `size` ("WxH"; square when absent)."""
    width, height = _size(size)
    aspect = width / height
    return min(SDXL_DIMENSIONS, key=lambda d: abs(d[0] / d[1] - aspect))


def sd3_aspect_ratio(size: str | None) -> str:
    """The SD3 aspect ratio closest to `size` ("WxH"; 1:1 when absent)."""
    width, height = _size(size)
    aspect = width / height

    def distance(ratio: str) -> float:
        w, h = ratio.split(":")
        return abs(int(w) / int(h) - aspect)

    return min(SD3_ASPECT_RATIOS, key=distance)


def multipart(fields: Mapping[str, str]) -> tuple[bytes, str]:
    """A `multipart/form-data` body of text fields, and its content type."""
    boundary = uuid.uuid4().hex
    parts = [
        f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n'.encode()
        + value.encode()
        + b"\r\n"
        for name, value in fields.items()
    ]
    body = b"".join(parts) + f"--{boundary}--\r\n".encode()
    return body, f"multipart/form-data; boundary={boundary}"


def map_error(status: int, headers: Mapping[str, str], body: bytes) -> ProviderError:
    """v1 `{id, name, message}` and v2beta `{id, name, errors: [...]}` answers."""
    data = json_object(body)
    name = data.get("name")
    errors = data.get("errors")
    message = data.get("message")
    if isinstance(errors, list) and errors:
        message = "; ".join(str(e) for e in errors)
    cls = error_class(status)
    if name == "content_moderation":
        cls = ContentFilteredError
    elif status == 402 or name == "insufficient_balance":
        cls = ProviderAuthError
    code = str(name) if name else None
    return provider_error(cls, NAME, status, headers, str(message or name or ""), code=code)


def _build(client: UpstreamClient, settings: Settings) -> StabilityProvider:
    return StabilityProvider(client)


SPEC = ProviderSpec(name=NAME, headers=stability_headers, build=_build)
