"""The fake Stability AI endpoints: v1 text-to-image (SDXL, JSON) and v2beta SD3 (multipart).

`Accept` chooses the answer: JSON (v1 `artifacts`; v2beta `{image, finish_reason, seed}`)
or the image bytes with `finish-reason` and `seed` headers. A request's seed 0 (or none)
becomes one derived from the prompt, so answers are deterministic.
"""

from __future__ import annotations

import base64
import hashlib
import uuid
from typing import NamedTuple

import orjson
from aiohttp import web

from oneflow_fakes.errors import ErrorAnswer, stability_error
from oneflow_fakes.exchange import Exchange, FakeState, JsonBody, random_id, read_json
from oneflow_fakes.media import colour_for, jpeg, png
from oneflow_fakes.models import (
    STABILITY_ASPECT_RATIOS,
    STABILITY_V1_ENGINES,
    STABILITY_V2_MODELS,
)

__all__ = ["StabilityImages"]

_V2_DEFAULT_MODEL = "sd3.5-large"


def _seed(prompt: str, given: object) -> int:
    if isinstance(given, int) and not isinstance(given, bool) and given > 0:
        return given
    return int.from_bytes(hashlib.blake2b(prompt.encode(), digest_size=4).digest()) or 1


def _check_key(request: web.Request, accepted: str | None, *, v2: bool) -> ErrorAnswer | None:
    scheme, _, key = request.headers.get("Authorization", "").partition(" ")
    key = key.strip()
    error_id = uuid.uuid4().hex
    if scheme.lower() != "bearer" or not key:
        return stability_error(401, "unauthorized", v2=v2, error_id=error_id)
    if accepted is not None and key != accepted:
        return stability_error(
            401, "unauthorized", "authorization header is invalid", v2=v2, error_id=error_id
        )
    return None


def _refuse(exchange: Exchange, name: str, message: str, status: int, *, v2: bool) -> web.Response:
    answer = stability_error(status, name, message, v2=v2, error_id=uuid.uuid4().hex)
    return exchange.error(answer)


class StabilityImages:
    def __init__(self, state: FakeState) -> None:
        self.state = state

    async def _admit(self, exchange: Exchange, *, v2: bool) -> web.StreamResponse | None:
        """The fault's answer or the credentials' refusal, if either stops the request."""
        model = exchange.record.model
        interfered = await exchange.interfere(
            stability_error, v2=v2, error_id=uuid.uuid4().hex, model=model
        )
        if interfered is not None:
            return interfered
        refused = _check_key(exchange.request, self.state.config.api_key, v2=v2)
        return None if refused is None else exchange.error(refused)

    # ---- v1 ------------------------------------------------------------------------------

    async def text_to_image(self, request: web.Request) -> web.StreamResponse:
        engine = request.match_info["engine"]
        body = await read_json(request)
        exchange = Exchange(
            self.state,
            request,
            provider="stability",
            endpoint="images",
            model=engine,
            stream=False,
            body=body.recorded,
            request_id=uuid.uuid4().hex,
        )
        stopped = await self._admit(exchange, v2=False)
        if stopped is not None:
            return stopped
        wants_png = request.headers.get("Accept", "application/json").startswith("image/png")
        asked = _v1_request(engine, body, wants_png)
        if isinstance(asked, _Refusal):
            return _refuse(exchange, asked.name, asked.message, asked.status, v2=False)
        prompt, width, height, samples = asked
        seed = _seed(prompt, body.data.get("seed"))
        image = png(width, height, colour_for(prompt))
        await exchange.generation_delay(1)
        if wants_png:
            headers = {"Finish-Reason": "SUCCESS", "Seed": str(seed)}
            return exchange.binary(image, "image/png", headers)
        encoded = base64.b64encode(image).decode()
        artifacts = [
            {"base64": encoded, "seed": seed + i, "finishReason": "SUCCESS"} for i in range(samples)
        ]
        return exchange.json({"artifacts": artifacts})

    # ---- v2beta --------------------------------------------------------------------------

    async def sd3(self, request: web.Request) -> web.StreamResponse:
        multipart = request.content_type == "multipart/form-data"
        fields, files = await _read_form(request, multipart)
        model = fields.get("model") or _V2_DEFAULT_MODEL
        record_body: dict[str, object] = dict(fields)
        if files:
            record_body["files"] = files
        exchange = Exchange(
            self.state,
            request,
            provider="stability",
            endpoint="images",
            model=model,
            stream=False,
            body=record_body,
            request_id=random_id("", 32).lower(),
        )
        stopped = await self._admit(exchange, v2=True)
        if stopped is not None:
            return stopped
        asked = _v2_request(multipart, fields, files, model)
        if isinstance(asked, _Refusal):
            return _refuse(exchange, asked.name, asked.message, asked.status, v2=True)
        prompt, seed, ratio, output_format = asked
        width, height = STABILITY_ASPECT_RATIOS[ratio]
        encode = png if output_format == "png" else jpeg
        image = encode(width, height, colour_for(prompt))
        media_type = f"image/{output_format}"
        await exchange.generation_delay(1)
        accept = request.headers.get("Accept", "image/*")
        if accept.startswith("application/json"):
            body = {
                "image": base64.b64encode(image).decode(),
                "finish_reason": "SUCCESS",
                "seed": seed,
            }
            return exchange.binary(orjson.dumps(body), f"application/json; type={media_type}", {})
        headers = {"finish-reason": "SUCCESS", "seed": str(seed)}
        return exchange.binary(image, media_type, headers)


class _Refusal(NamedTuple):
    name: str
    message: str
    status: int = 400


def _v1_request(
    engine: str, body: JsonBody, wants_png: bool
) -> _Refusal | tuple[str, int, int, int]:
    """A v1 request's prompt, width, height and samples, or why it is refused."""
    if engine not in STABILITY_V1_ENGINES:
        return _Refusal("not_found", f"The specified engine (ID {engine}) was not found.", 404)
    if not body.is_object:
        return _Refusal("bad_request", "body: must be valid JSON")
    data = body.data
    prompts = data.get("text_prompts")
    texts = (
        [p.get("text") for p in prompts if isinstance(p, dict)] if isinstance(prompts, list) else []
    )
    if not texts or not all(isinstance(t, str) and t for t in texts):
        return _Refusal("invalid_prompts", "text_prompts: is required")
    allowed = STABILITY_V1_ENGINES[engine]
    default = 1024 if allowed is not None else 512
    width, height = data.get("width", default), data.get("height", default)
    if not isinstance(width, int) or not isinstance(height, int):
        return _Refusal("invalid_height_or_width", "height and width must be integers")
    if allowed is not None and (width, height) not in allowed:
        listed = ", ".join(f"{w}x{h}" for w, h in sorted(allowed))
        return _Refusal(
            "invalid_height_or_width",
            f"for {engine} the allowed dimensions are {listed}, but we received {width}x{height}",
        )
    if allowed is None and (width % 64 or height % 64 or not width * height >= 128):
        return _Refusal("invalid_height_or_width", "height and width must be multiples of 64")
    samples = data.get("samples", 1)
    if not isinstance(samples, int) or not 1 <= samples <= 10:
        return _Refusal("bad_request", "samples: must be between 1 and 10")
    if wants_png and samples != 1:
        return _Refusal("invalid_samples", "samples must be 1 when the Accept header is image/png")
    return " ".join(str(t) for t in texts), width, height, samples


async def _read_form(
    request: web.Request, multipart: bool
) -> tuple[dict[str, str], dict[str, int]]:
    """A multipart body's text fields, and the size of each file (a body of another kind is
    read and ignored)."""
    fields: dict[str, str] = {}
    files: dict[str, int] = {}
    if multipart:
        form = await request.post()
        for name, value in form.items():
            if isinstance(value, str):
                fields[name] = value
            elif isinstance(value, web.FileField):
                files[name] = len(value.file.read())
    else:
        await request.read()
    return fields, files


def _v2_request(
    multipart: bool, fields: dict[str, str], files: dict[str, int], model: str
) -> _Refusal | tuple[str, int, str, str]:
    """An SD3 request's prompt, seed, aspect ratio and output format, or why it is refused."""
    if not multipart:
        return _Refusal("bad_request", "content-type: must be multipart/form-data")
    prompt = fields.get("prompt", "")
    if not prompt:
        return _Refusal("bad_request", "prompt: cannot be empty")
    if len(prompt) > 10_000:
        return _Refusal("bad_request", "prompt: must be at most 10000 characters")
    if model not in STABILITY_V2_MODELS:
        listed = ", ".join(sorted(STABILITY_V2_MODELS))
        return _Refusal("bad_request", f"model: must be one of {listed}")
    mode = fields.get("mode", "text-to-image")
    if mode == "image-to-image" and "image" not in files:
        return _Refusal("bad_request", "image: is required when mode is image-to-image")
    if mode not in ("text-to-image", "image-to-image"):
        return _Refusal("bad_request", "mode: must be one of text-to-image, image-to-image")
    ratio = fields.get("aspect_ratio", "1:1")
    if ratio not in STABILITY_ASPECT_RATIOS:
        listed = ", ".join(STABILITY_ASPECT_RATIOS)
        return _Refusal("bad_request", f"aspect_ratio: must be one of {listed}")
    output_format = fields.get("output_format", "png")
    if output_format not in ("png", "jpeg"):
        return _Refusal("bad_request", "output_format: must be one of png, jpeg")
    try:
        given_seed = int(fields.get("seed", "0"))
    except ValueError:
        return _Refusal("bad_request", "seed: must be an integer")
    return prompt, _seed(prompt, given_seed), ratio, output_format
