"""Fake image endpoints: DALL-E through the official SDK, Stability v1 and v2beta over HTTP."""

from __future__ import annotations

import base64

import aiohttp
import httpx
import openai
import pytest

from oneflow_fakes import FakeProviders
from tests.fakes.formats import jpeg_size, png_size

BEARER = {"Authorization": "Bearer sk-stability-test"}


def test_dall_e_3_url(http: httpx.Client, openai_client: openai.OpenAI) -> None:
    result = openai_client.images.generate(
        model="dall-e-3", prompt="an otter", size="1024x1792", quality="hd", style="natural"
    )
    (image,) = result.data or []
    assert image.revised_prompt and image.revised_prompt.startswith("an otter")
    assert image.url is not None and image.b64_json is None
    download = http.get(image.url)
    assert download.headers["content-type"] == "image/png"
    assert png_size(download.content) == (1024, 1792)


def test_dall_e_2_several_base64_images(openai_client: openai.OpenAI) -> None:
    result = openai_client.images.generate(
        model="dall-e-2", prompt="an otter", n=3, size="256x256", response_format="b64_json"
    )
    images = result.data or []
    assert len(images) == 3
    assert all(i.revised_prompt is None for i in images)
    assert png_size(base64.b64decode(images[0].b64_json or "")) == (256, 256)


def test_dall_e_defaults_and_errors(openai_client: openai.OpenAI, fake: FakeProviders) -> None:
    openai_client.images.generate(prompt="an otter")
    assert fake.calls(endpoint="images")[-1].model == "dall-e-2"  # the API's default
    with pytest.raises(openai.BadRequestError) as many:
        openai_client.images.generate(model="dall-e-3", prompt="an otter", n=2)
    assert many.value.message == "Error code: 400 - You must provide n=1 for this model."
    with pytest.raises(openai.BadRequestError) as size:
        openai_client.images.generate(model="dall-e-3", prompt="an otter", size="256x256")
    assert "is not one of ['1024x1024', '1792x1024', '1024x1792'] - 'size'" in size.value.message
    with pytest.raises(openai.BadRequestError) as long_prompt:
        openai_client.images.generate(model="dall-e-2", prompt="x" * 1001)
    assert long_prompt.value.param == "prompt"


def test_stability_v1_json_artifacts(http: httpx.Client, fake: FakeProviders) -> None:
    url = f"{fake.base_urls['stability']}/v1/generation/stable-diffusion-xl-1024-v1-0/text-to-image"
    body = {"text_prompts": [{"text": "a lighthouse", "weight": 1}], "samples": 2, "width": 1216,
            "height": 832}  # fmt: skip
    response = http.post(url, json=body, headers={**BEARER, "Accept": "application/json"})
    assert response.status_code == 200
    artifacts = response.json()["artifacts"]
    assert [a["finishReason"] for a in artifacts] == ["SUCCESS", "SUCCESS"]
    assert artifacts[1]["seed"] == artifacts[0]["seed"] + 1
    assert png_size(base64.b64decode(artifacts[0]["base64"])) == (1216, 832)
    again = http.post(url, json=body, headers=BEARER).json()["artifacts"]
    assert again[0]["seed"] == artifacts[0]["seed"]  # derived from the prompt


def test_stability_v1_png_and_errors(http: httpx.Client, fake: FakeProviders) -> None:
    base = f"{fake.base_urls['stability']}/v1/generation"
    url = f"{base}/stable-diffusion-xl-1024-v1-0/text-to-image"
    body = {"text_prompts": [{"text": "a lighthouse"}], "seed": 42}
    image = http.post(url, json=body, headers={**BEARER, "Accept": "image/png"})
    assert image.headers["content-type"] == "image/png"
    assert image.headers["finish-reason"] == "SUCCESS" and image.headers["seed"] == "42"
    assert png_size(image.content) == (1024, 1024)
    samples = http.post(url, json={**body, "samples": 2}, headers={**BEARER, "Accept": "image/png"})
    assert samples.status_code == 400 and samples.json()["name"] == "invalid_samples"
    size = http.post(url, json={**body, "width": 512, "height": 512}, headers=BEARER)
    assert size.status_code == 400 and size.json()["name"] == "invalid_height_or_width"
    engine = http.post(f"{base}/no-such-engine/text-to-image", json=body, headers=BEARER)
    assert engine.status_code == 404
    assert set(engine.json()) == {"id", "name", "message"}
    assert engine.json()["message"] == "The specified engine (ID no-such-engine) was not found."
    anonymous = http.post(url, json=body)
    assert anonymous.status_code == 401
    assert anonymous.json()["name"] == "unauthorized"


async def test_stability_v2beta_sd3_image_bytes(fake: FakeProviders) -> None:
    url = f"{fake.base_urls['stability']}/v2beta/stable-image/generate/sd3"
    form = aiohttp.FormData(default_to_multipart=True)  # as the API requires
    form.add_field("prompt", "a lighthouse")
    form.add_field("model", "sd3.5-large-turbo")
    form.add_field("aspect_ratio", "16:9")
    form.add_field("output_format", "jpeg")
    async with (
        aiohttp.ClientSession() as session,
        session.post(url, data=form, headers={**BEARER, "Accept": "image/*"}) as response,
    ):
        assert response.status == 200
        assert response.headers["Content-Type"] == "image/jpeg"
        assert response.headers["finish-reason"] == "SUCCESS"
        assert int(response.headers["seed"]) > 0
        assert jpeg_size(await response.read()) == (1344, 768)
    assert fake.calls(provider="stability")[-1].model == "sd3.5-large-turbo"


def test_stability_v2beta_sd3_json(http: httpx.Client, fake: FakeProviders) -> None:
    url = f"{fake.base_urls['stability']}/v2beta/stable-image/generate/sd3"
    response = http.post(
        url,
        headers={**BEARER, "Accept": "application/json"},
        files={"none": ""},
        data={"prompt": "a lighthouse", "seed": "7"},
    )
    assert response.headers["content-type"] == "application/json; type=image/png"
    body = response.json()
    assert body["finish_reason"] == "SUCCESS" and body["seed"] == 7
    assert png_size(base64.b64decode(body["image"])) == (1024, 1024)
    assert fake.calls(provider="stability")[-1].model == "sd3.5-large"  # the default


def test_stability_v2beta_errors(http: httpx.Client, fake: FakeProviders) -> None:
    url = f"{fake.base_urls['stability']}/v2beta/stable-image/generate/sd3"
    missing = http.post(url, headers=BEARER, files={"none": ""}, data={"model": "sd3.5-large"})
    assert missing.status_code == 400
    assert missing.json()["name"] == "bad_request"
    assert missing.json()["errors"] == ["prompt: cannot be empty"]
    json_body = http.post(url, headers=BEARER, json={"prompt": "x"})
    assert json_body.status_code == 400
    unknown = http.post(
        url, headers=BEARER, files={"none": ""}, data={"prompt": "x", "model": "sd9"}
    )
    assert unknown.status_code == 400 and "model:" in unknown.json()["errors"][0]
    anonymous = http.post(url, files={"none": ""}, data={"prompt": "x"})
    assert anonymous.status_code == 401 and set(anonymous.json()) == {"id", "name", "errors"}
