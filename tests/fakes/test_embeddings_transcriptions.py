"""The fake OpenAI's embeddings and speech to text, straight through the official SDK."""

from __future__ import annotations

import base64
import math
import struct

import openai
import pytest

from oneflow_fakes.openai_embeddings import fake_vector
from oneflow_fakes.openai_transcriptions import fake_duration, fake_transcript
from tests.support.audio import mp3_like, wav


def test_embeddings_are_deterministic_unit_vectors(openai_client: openai.OpenAI) -> None:
    first = openai_client.embeddings.create(
        model="text-embedding-3-small", input=["a cat", "a dog"], encoding_format="float"
    )
    again = openai_client.embeddings.create(
        model="text-embedding-3-small", input="a cat", encoding_format="float"
    )
    cat, dog = (item.embedding for item in first.data)
    assert cat == again.data[0].embedding != dog
    assert len(cat) == 1536 and math.isclose(sum(v * v for v in cat), 1.0, rel_tol=1e-9)
    assert first.usage.prompt_tokens == first.usage.total_tokens > 0


def test_base64_and_shortened_vectors(openai_client: openai.OpenAI) -> None:
    raw = openai_client.embeddings.with_raw_response.create(
        model="text-embedding-3-large", input="hi", dimensions=64, encoding_format="base64"
    )
    encoded = raw.http_response.json()["data"][0]["embedding"]
    values = struct.unpack("<64f", base64.b64decode(encoded))
    assert list(values) == pytest.approx(fake_vector("text-embedding-3-large", "hi", 64), abs=1e-6)


@pytest.mark.parametrize(
    ("fields", "status", "param"),
    [
        ({"model": "text-embedding-ada-002", "input": "x", "dimensions": 256}, 400, "dimensions"),
        ({"model": "text-embedding-3-small", "input": "x", "dimensions": 2000}, 400, "dimensions"),
        ({"model": "text-embedding-3-small", "input": [1.5]}, 400, "input"),
        ({"model": "text-embedding-3-small", "input": "token " * 9000}, 400, "input"),
        ({"model": "no-such-embedding", "input": "x"}, 404, None),
    ],
)
def test_embedding_errors_in_openais_shape(
    openai_client: openai.OpenAI, fields: dict[str, object], status: int, param: str | None
) -> None:
    with pytest.raises(openai.APIStatusError) as refused:
        openai_client.embeddings.create(**fields)  # type: ignore[arg-type]
    assert refused.value.status_code == status
    assert refused.value.body["param"] == param  # type: ignore[index]


def test_transcriptions_in_every_format(openai_client: openai.OpenAI) -> None:
    audio = wav(4.5)
    words = fake_transcript(audio, 4.5)
    raw = openai_client.audio.transcriptions.with_raw_response.create(
        model="whisper-1", file=("a.wav", audio)
    )
    assert raw.parse().text == words
    assert raw.http_response.json() == {
        "text": words,
        "usage": {"type": "duration", "seconds": 4.5},
    }
    verbose = openai_client.audio.transcriptions.create(
        model="whisper-1", file=("a.wav", audio), response_format="verbose_json"
    )
    assert verbose.duration == 4.5 and verbose.language == "english"
    srt = openai_client.audio.transcriptions.create(
        model="whisper-1", file=("a.wav", audio), response_format="srt"
    )
    assert srt.startswith("1\n00:00:00,000 --> ")
    mp3 = mp3_like(48_000)
    assert fake_duration(mp3) == 3.0
    assert openai_client.audio.transcriptions.create(
        model="gpt-4o-transcribe", file=("a.mp3", mp3), response_format="text"
    ).strip() == fake_transcript(mp3, 3.0)


def test_transcription_errors_in_openais_shape(openai_client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as not_audio:
        openai_client.audio.transcriptions.create(model="whisper-1", file=("a.txt", b"words"))
    assert not_audio.value.body["param"] == "file"  # type: ignore[index]
    with pytest.raises(openai.BadRequestError) as no_vtt:
        openai_client.audio.transcriptions.create(
            model="gpt-4o-mini-transcribe", file=("a.wav", wav(1)), response_format="vtt"
        )
    assert no_vtt.value.body["param"] == "response_format"  # type: ignore[index]
    with pytest.raises(openai.NotFoundError):
        openai_client.audio.transcriptions.create(model="whisper-9", file=("a.wav", wav(1)))
