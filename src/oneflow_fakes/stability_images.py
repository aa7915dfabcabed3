"""The fake Stability AI endpoints: v1 text-to-image (SDXL, JSON) and v2beta SD3 (multipart).

`Accept` chooses the answer: JSON (v1 `artifacts`; v2beta `{image, finish_reason, seed}`)
or the image bytes with `finish-reason` and `seed` headers. A request's seed 0 (or none)
becomes one derived from the prompt, so answers are deterministic.
"""

from __future__ import annotations

import base64
import hashlib
import uuid

import orjson
from aiohttp import web

from oneflow_fakes.errors import ErrorAnswer, stability_error
from oneflow_fakes.exchange import Exchange, FakeState, random_id, read_json
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
        data = body.data
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

        def bad(name: str, message: str, status: int = 400) -> web.Response:
            return _refuse(exchange, name, message, status, v2=False)

        if engine not in STABILITY_V1_ENGINES:
            return bad("not_found", f"The specified engine (ID {engine}) was not found.", 404)
        if not body.is_object:
            return bad("bad_request", "body: must be valid JSON")
        prompts = data.get("text_prompts")
        texts = (
            [p.get("text") for p in prompts if isinstance(p, dict)]
            if isinstance(prompts, list)
            else []
        )
        if not texts or not all(isinstance(t, str) and t for t in texts):
            return bad("invalid_prompts", "text_prompts: is required")
        prompt = " ".join(str(t) for t in texts)
        allowed = STABILITY_V1_ENGINES[engine]
        default = 1024 if allowed is not None else 512
        width, height = data.get("width", default), data.get("height", default)
        if not isinstance(width, int) or not isinstance(height, int):
            return bad("invalid_height_or_width", "height and width must be integers")
        if allowed is not None and (width, height) not in allowed:
            listed = ", ".join(f"{w}x{h}" for w, h in sorted(allowed))
            return bad(
                "invalid_height_or_width",
                f"for {engine} the allowed dimensions are {listed}, "
                f"but we received {width}x{height}",
            )
        if allowed is None and (width % 64 or height % 64 or not width * height >= 128):
            return bad("invalid_height_or_width", "height and width must be multiples of 64")
        samples = data.get("samples", 1)
        if not isinstance(samples, int) or not 1 <= samples <= 10:
            return bad("bad_request", "samples: must be between 1 and 10")
        accept = request.headers.get("Accept", "application/json")
        wants_png = accept.startswith("image/png")
        if wants_png and samples != 1:
            return bad("invalid_samples", "samples must be 1 when the Accept header is image/png")
        seed = _seed(prompt, data.get("seed"))
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

        def bad(message: str, name: str = "bad_request") -> web.Response:
            return _refuse(exchange, name, message, 400, v2=True)

        if not multipart:
            return bad("content-type: must be multipart/form-data")
        prompt = fields.get("prompt", "")
        if not prompt:
            return bad("prompt: cannot be empty")
        if len(prompt) > 10_000:
            return bad("prompt: must be at most 10000 characters")
        if model not in STABILITY_V2_MODELS:
            return bad(f"model: must be one of {', '.join(sorted(STABILITY_V2_MODELS))}")
        mode = fields.get("mode", "text-to-image")
        if mode == "image-to-image" and "image" not in files:
            return bad("image: is required when mode is image-to-image")
        if mode not in ("text-to-image", "image-to-image"):
            return bad("mode: must be one of text-to-image, image-to-image")
        ratio = fields.get("aspect_ratio", "1:1")
        if ratio not in STABILITY_ASPECT_RATIOS:
            return bad(f"aspect_ratio: must be one of {', '.join(STABILITY_ASPECT_RATIOS)}")
        output_format = fields.get("output_format", "png")
        if output_format not in ("png", "jpeg"):
            return bad("output_format: must be one of png, jpeg")
        try:
            given_seed = int(fields.get("seed", "0"))
        except ValueError:
            return bad("seed: must be an integer")
        seed = _seed(prompt, given_seed)
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
