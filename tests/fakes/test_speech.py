"""The fake ElevenLabs text-to-speech endpoints over HTTP."""

from __future__ import annotations

import httpx
import pytest

from oneflow_fakes import FakeProviders
from tests.fakes.formats import mp3_frames

RACHEL = "21m00Tcm4TlvDq8ikWAM"
KEY = {"xi-api-key": "xi-test-key"}


def _url(fake: FakeProviders, voice: str = RACHEL, suffix: str = "") -> str:
    return f"{fake.base_urls['elevenlabs']}/v1/text-to-speech/{voice}{suffix}"


def test_mp3_sized_by_the_text(http: httpx.Client, fake: FakeProviders) -> None:
    short = http.post(_url(fake), json={"text": "x" * 150, "model_id": "eleven_multilingual_v2"},
                       headers=KEY)  # fmt: skip
    assert short.status_code == 200
    assert short.headers["content-type"] == "audio/mpeg"
    assert short.headers["character-cost"] == "150"
    assert short.headers["request-id"]
    frames = mp3_frames(short.content)
    assert frames * 1152 / 44100 == pytest.approx(10, abs=0.05)
    longer = http.post(_url(fake), json={"text": "x" * 450}, headers=KEY)
    assert mp3_frames(longer.content) == pytest.approx(3 * frames, abs=1)
    call = fake.calls(provider="elevenlabs")[0]
    assert call.model == "eleven_multilingual_v2" and call.headers["xi-api-key"] == "***-key"


def test_turbo_models_cost_half(http: httpx.Client, fake: FakeProviders) -> None:
    response = http.post(
        _url(fake), json={"text": "x" * 100, "model_id": "eleven_turbo_v2_5"}, headers=KEY
    )
    assert response.headers["character-cost"] == "50"


def test_stream_variant_sends_the_same_audio_in_chunks(
    http: httpx.Client, fake: FakeProviders
) -> None:
    body = {"text": "Hello there, this is a longer sentence to speak out loud."}
    whole = http.post(_url(fake), json=body, headers=KEY).content
    with http.stream("POST", _url(fake, suffix="/stream"), json=body, headers=KEY) as response:
        assert response.headers["content-type"] == "audio/mpeg"
        assert "content-length" not in response.headers
        parts = list(response.iter_raw())
    assert b"".join(parts) == whole


@pytest.mark.parametrize(
    ("output_format", "content_type", "size"),
    [("pcm_16000", "audio/pcm", 2 * 16000), ("ulaw_8000", "audio/basic", 8000)],
)
def test_output_formats(
    http: httpx.Client, fake: FakeProviders, output_format: str, content_type: str, size: int
) -> None:
    response = http.post(
        _url(fake), params={"output_format": output_format}, json={"text": "x" * 15}, headers=KEY
    )
    assert response.headers["content-type"] == content_type
    assert len(response.content) == size


def test_errors(http: httpx.Client, fake: FakeProviders) -> None:
    alloy = http.post(_url(fake, voice="alloy"), json={"text": "hi"}, headers=KEY)
    assert alloy.status_code == 404
    assert alloy.json() == {
        "detail": {
            "status": "voice_not_found",
            "message": "A voice with the voice_id alloy was not found.",
        }
    }
    no_text = http.post(_url(fake), json={"model_id": "eleven_multilingual_v2"}, headers=KEY)
    assert no_text.status_code == 422
    assert no_text.json()["detail"][0]["loc"] == ["body", "text"]
    anonymous = http.post(_url(fake), json={"text": "hi"})
    assert anonymous.status_code == 401
    assert anonymous.json()["detail"]["status"] == "needs_authorization"
    fmt = http.post(_url(fake), params={"output_format": "aac"}, json={"text": "hi"}, headers=KEY)
    assert fmt.status_code == 400


def test_a_fixed_key_refuses_others(http: httpx.Client) -> None:
    with FakeProviders(api_key="xi-right") as fake:
        wrong = http.post(_url(fake), json={"text": "hi"}, headers={"xi-api-key": "xi-wrong"})
        assert wrong.status_code == 401
        assert wrong.json()["detail"] == {"status": "invalid_api_key", "message": "Invalid API key"}
        right = http.post(_url(fake), json={"text": "hi"}, headers={"xi-api-key": "xi-right"})
        assert right.status_code == 200
