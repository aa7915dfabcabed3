"""The fake OpenAI Images endpoint (`POST /openai/v1/images/generations`) for DALL-E 2 and 3.

`response_format: url` answers with URLs on the fake server itself (`/openai/files/...`),
which serve the PNG, so a client can download what it was given.
"""

from __future__ import annotations

import base64
import re

from aiohttp import web

from oneflow_fakes.errors import ErrorAnswer, openai_error
from oneflow_fakes.exchange import Exchange, FakeState, now, random_id, read_json
from oneflow_fakes.media import colour_for, png
from oneflow_fakes.models import OPENAI_IMAGE_MODELS
from oneflow_fakes.openai_common import (
    check_openai_key,
    missing_parameter,
    openai_headers,
    unsupported_value,
)

__all__ = ["OpenAIImages"]

_PROMPT_LIMITS = {"dall-e-2": 1000, "dall-e-3": 4000}
_FILE = re.compile(r"^img-(\d{1,5})x(\d{1,5})-([0-9a-f]{6})-[A-Za-z0-9]+\.png$")


def _revised(prompt: str) -> str:
    return f"{prompt.strip().rstrip('.')}, shown in rich detail with soft natural lighting."


class OpenAIImages:
    def __init__(self, state: FakeState) -> None:
        self.state = state

    async def generations(self, request: web.Request) -> web.StreamResponse:
        body = await read_json(request)
        data = body.data
        model_name = body.string("model") or "dall-e-2"
        exchange = Exchange(
            self.state,
            request,
            provider="openai",
            endpoint="images",
            model=model_name,
            stream=False,
            body=body.recorded,
            request_id=random_id("req_", 32),
        )
        interfered = await exchange.interfere(openai_error, model=model_name)
        if interfered is not None:
            return interfered
        refused = check_openai_key(request, self.state.config.api_key)
        if refused is None and not body.is_object:
            refused = openai_error(400, "invalid_request_error", "Invalid JSON body.")
        if refused is not None:
            return exchange.error(refused)
        checked = self._validate(data, model_name)
        if isinstance(checked, ErrorAnswer):
            return exchange.error(checked)
        prompt, size, n, as_url = checked
        width, height = (int(side) for side in size.split("x"))
        colour = colour_for(prompt)
        await exchange.generation_delay(1)
        items: list[dict[str, object]] = []
        for _ in range(n):
            if as_url:
                name = f"img-{width}x{height}-{bytes(colour).hex()}-{random_id('', 16)}.png"
                item: dict[str, object] = {
                    "url": f"{request.scheme}://{request.host}/openai/files/{name}"
                }
            else:
                item = {"b64_json": base64.b64encode(png(width, height, colour)).decode()}
            if model_name == "dall-e-3":
                item["revised_prompt"] = _revised(prompt)
            items.append(item)
        return exchange.json({"created": now(), "data": items}, openai_headers())

    def _validate(
        self, data: dict[str, object], model: str
    ) -> ErrorAnswer | tuple[str, str, int, bool]:
        prompt = data.get("prompt")
        if not isinstance(prompt, str) or not prompt:
            return missing_parameter("prompt")
        known = OPENAI_IMAGE_MODELS.get(model)
        if known is None:
            return openai_error(404, "model_not_found", model=model)
        sizes, most = known
        limit = _PROMPT_LIMITS[model]
        if len(prompt) > limit:
            return openai_error(
                400,
                "string_above_max_length",
                f"Invalid 'prompt': string too long. Expected a string with maximum length "
                f"{limit}, but got a string with length {len(prompt)} instead.",
                param="prompt",
            )
        n = data.get("n", 1)
        if n is None:
            n = 1
        if not isinstance(n, int) or isinstance(n, bool) or n < 1 or n > 10:
            return openai_error(
                400, "invalid_value", f"Invalid 'n': expected 1..10, got {n}.", param="n"
            )
        if n > most:
            return openai_error(
                400, "invalid_request_error", "You must provide n=1 for this model."
            )
        size = data.get("size") or "1024x1024"
        if size not in sizes:
            allowed = "[" + ", ".join(f"'{s}'" for s in sizes) + "]"
            return openai_error(
                400, "invalid_request_error", f"'{size}' is not one of {allowed} - 'size'"
            )
        quality = data.get("quality")
        if quality not in (None, "standard", "auto") and not (
            model == "dall-e-3" and quality == "hd"
        ):
            supported = ("standard", "hd") if model == "dall-e-3" else ("standard",)
            return unsupported_value(quality, supported, "quality")
        style = data.get("style")
        if style is not None and (model != "dall-e-3" or style not in ("vivid", "natural")):
            return openai_error(
                400, "invalid_value", f"Invalid value for 'style': '{style}'.", param="style"
            )
        response_format = data.get("response_format") or "url"
        if response_format not in ("url", "b64_json"):
            return unsupported_value(response_format, ("url", "b64_json"), "response_format")
        return prompt, str(size), n, response_format == "url"

    async def file(self, request: web.Request) -> web.Response:
        """An image a `url` answer pointed at."""
        match = _FILE.match(request.match_info["name"])
        if match is None:
            return web.Response(status=404, text="The specified blob does not exist.")
        width, height = int(match.group(1)), int(match.group(2))
        if not (0 < width <= 2048 and 0 < height <= 2048):
            return web.Response(status=404, text="The specified blob does not exist.")
        colour = bytes.fromhex(match.group(3))
        data = png(width, height, (colour[0], colour[1], colour[2]))
        return web.Response(body=data, content_type="image/png")
