"""Images through DALL·E and Stability, speech through ElevenLabs, with the OpenAI SDK."""

from __future__ import annotations

import base64
from decimal import Decimal

import openai
import pytest

from tests.integration.conftest import Gateway

PNG = b"\x89PNG\r\n\x1a\n"


def test_dall_e_3_url(gateway: Gateway) -> None:
    raw = gateway.openai().images.with_raw_response.generate(
        model="dall-e-3", prompt="an otter", size="1024x1792", quality="hd", style="natural"
    )
    images = raw.parse()
    assert images.data is not None and images.data[0].url
    assert raw.headers["x-oneflow-model"] == "dall-e-3"
    assert raw.headers["x-oneflow-provider"] == "openai"
    assert Decimal(raw.headers["x-oneflow-credits"]) == Decimal("12")  # $0.120 for hd 1024x1792
    (call,) = gateway.fakes.calls("openai")
    assert call.body == {
        "model": "dall-e-3",
        "prompt": "an otter",
        "n": 1,
        "response_format": "url",
        "size": "1024x1792",
        "quality": "hd",
        "style": "natural",
    }
    (record,) = gateway.sink.wait_for(1)
    assert record.operation == "image" and record.usage.images == 1


def test_dall_e_2_several_images_as_base64(gateway: Gateway) -> None:
    images = gateway.openai().images.generate(
        model="dall-e-2", prompt="a fox", n=2, size="256x256", response_format="b64_json"
    )
    assert images.data is not None and len(images.data) == 2
    assert base64.b64decode(images.data[0].b64_json or "").startswith(PNG)
    (record,) = gateway.sink.wait_for(1)
    assert record.usage.images == 2 and record.cost.credits == Decimal("3.2")  # 2 x $0.016


def test_sd3_through_the_multipart_api(gateway: Gateway) -> None:
    raw = gateway.openai().images.with_raw_response.generate(
        model="sd3.5-large", prompt="a lighthouse", size="1792x1024", response_format="b64_json"
    )
    images = raw.parse()
    assert images.data is not None
    assert base64.b64decode(images.data[0].b64_json or "").startswith(PNG)
    assert raw.headers["x-oneflow-provider"] == "stability"
    assert Decimal(raw.headers["x-oneflow-credits"]) == Decimal("6.5")
    (call,) = gateway.fakes.calls("stability")
    assert call.path == "/stability/v2beta/stable-image/generate/sd3"
    assert call.headers["content-type"].startswith("multipart/form-data")
    assert isinstance(call.body, dict)
    assert (call.body["prompt"], call.body["aspect_ratio"], call.body["model"]) == (
        "a lighthouse",
        "16:9",
        "sd3.5-large",
    )


def test_sdxl_url_is_a_data_url(gateway: Gateway) -> None:
    images = gateway.openai().images.generate(model="sdxl", prompt="a castle")
    assert images.data is not None
    url = images.data[0].url or ""
    assert url.startswith("data:image/png;base64,")
    assert base64.b64decode(url.split(",", 1)[1]).startswith(PNG)
    (call,) = gateway.fakes.calls("stability")
    assert call.path == "/stability/v1/generation/stable-diffusion-xl-1024-v1-0/text-to-image"
    assert isinstance(call.body, dict)
    assert (call.body["width"], call.body["height"]) == (1024, 1024)


def test_auto_image_routing_picks_the_cheapest(gateway: Gateway) -> None:
    response = gateway.post("/v1/images/generations", {"prompt": "a boat"})
    assert response.status_code == 200
    assert response.headers["x-oneflow-model"] == "stable-diffusion-xl-1024-v1-0"


def test_a_size_the_model_does_not_make_is_a_400_naming_size(gateway: Gateway) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        gateway.openai().images.generate(model="dall-e-3", prompt="x", size="256x256")
    assert caught.value.param == "size"
    assert gateway.fakes.call_count() == 0


@pytest.mark.parametrize("model", ["eleven_multilingual_v2", "tts-1"])
def test_speech_is_audio_of_the_right_type(gateway: Gateway, model: str) -> None:
    raw = gateway.openai().audio.speech.with_raw_response.create(
        model=model, voice="alloy", input="Hello from OneFlow"
    )
    audio = raw.content
    assert raw.headers["content-type"] == "audio/mpeg"
    assert audio[:3] == b"ID3" or audio[:2] == b"\xff\xfb"
    assert raw.headers["x-oneflow-model"] == "eleven_multilingual_v2"
    assert raw.headers["x-oneflow-provider"] == "elevenlabs"
    assert Decimal(raw.headers["x-oneflow-credits"]) == Decimal("0.18")  # 18 chars, $0.10/1K
    (call,) = gateway.fakes.calls("elevenlabs")
    assert call.path == "/elevenlabs/v1/text-to-speech/21m00Tcm4TlvDq8ikWAM"  # alloy -> Rachel
    assert call.headers["xi-api-key"]
    assert call.body == {"text": "Hello from OneFlow", "model_id": "eleven_multilingual_v2"}
    (record,) = gateway.sink.wait_for(1)
    assert record.operation == "speech" and record.usage.characters == 18


def test_voice_ids_pass_through_and_formats_map(gateway: Gateway) -> None:
    raw = gateway.openai().audio.speech.with_raw_response.create(
        model="eleven_multilingual_v2",
        voice="pNInz6obpgDQGcFmaJgB",  # type: ignore[arg-type]
        input="Hi",
        response_format="wav",
        speed=1.1,
    )
    # wav_24000 asked upstream: the fake answers with that format's bytes and type
    assert raw.content[:4] == b"RIFF" and raw.headers["content-type"] == "audio/wav"
    (call,) = gateway.fakes.calls("elevenlabs")
    assert call.path.endswith("/pNInz6obpgDQGcFmaJgB")
    assert call.body == {
        "text": "Hi",
        "model_id": "eleven_multilingual_v2",
        "voice_settings": {"speed": 1.1},
    }


def test_a_format_elevenlabs_lacks_is_a_400(gateway: Gateway) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        gateway.openai().audio.speech.create(
            model="eleven_multilingual_v2", voice="alloy", input="Hi", response_format="aac"
        )
    assert caught.value.param == "response_format"
