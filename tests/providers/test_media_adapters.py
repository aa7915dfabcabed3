"""Stability and ElevenLabs details: size mapping, multipart bodies, error bodies."""

from __future__ import annotations

import pytest

from oneflow_ai.errors import (
    ContentFilteredError,
    ProviderAuthError,
    ProviderBadRequestError,
    ProviderRateLimitedError,
    ProviderUnavailableError,
)
from oneflow_ai.providers import elevenlabs, stability
from oneflow_ai.providers.errors import retry_after


@pytest.mark.parametrize(
    ("size", "sdxl", "sd3"),
    [
        (None, (1024, 1024), "1:1"),
        ("1024x1024", (1024, 1024), "1:1"),
        ("1792x1024", (1344, 768), "16:9"),
        ("1024x1792", (768, 1344), "9:16"),
        ("512x768", (832, 1216), "2:3"),
        ("nonsense", (1024, 1024), "1:1"),
    ],
)
def test_sizes_map_to_what_each_api_takes(
    size: str | None, sdxl: tuple[int, int], sd3: str
) -> None:
    assert stability.sdxl_dimensions(size) == sdxl
    assert stability.sd3_aspect_ratio(size) == sd3


def test_multipart_body() -> None:
    body, content_type = stability.multipart({"prompt": "a cat", "model": "sd3.5-large"})
    boundary = content_type.removeprefix("multipart/form-data; boundary=")
    assert (
        body
        == (
            f'--{boundary}\r\nContent-Disposition: form-data; name="prompt"\r\n\r\na cat\r\n'
            f'--{boundary}\r\nContent-Disposition: form-data; name="model"\r\n\r\nsd3.5-large\r\n'
            f"--{boundary}--\r\n"
        ).encode()
    )


@pytest.mark.parametrize(
    ("status", "body", "expected", "message"),
    [
        (
            403,
            b'{"id":"1","name":"content_moderation","errors":["flagged"]}',
            ContentFilteredError,
            "flagged",
        ),
        (
            400,
            b'{"id":"1","name":"invalid_height_or_width","message":"bad size"}',
            ProviderBadRequestError,
            "bad size",
        ),
        (
            402,
            b'{"id":"1","name":"insufficient_balance","errors":["no credits"]}',
            ProviderAuthError,
            "credentials",
        ),
        (500, b"oops", ProviderUnavailableError, "HTTP 500"),
    ],
)
def test_stability_errors(
    status: int, body: bytes, expected: type[Exception], message: str
) -> None:
    error = stability.map_error(status, {}, body)
    assert type(error) is expected and message in error.message


@pytest.mark.parametrize(
    ("status", "body", "expected", "message"),
    [
        (
            401,
            b'{"detail":{"status":"quota_exceeded","message":"no quota"}}',
            ProviderAuthError,
            "quota_exceeded",
        ),
        (
            400,
            b'{"detail":{"status":"voice_not_found","message":"no such voice"}}',
            ProviderBadRequestError,
            "no such voice",
        ),
        (
            422,
            b'{"detail":[{"loc":["body","text"],"msg":"field required"}]}',
            ProviderBadRequestError,
            "text: field required",
        ),
        (
            429,
            b'{"detail":{"status":"system_busy","message":"busy"}}',
            ProviderUnavailableError,
            "busy",
        ),
        (
            429,
            b'{"detail":{"status":"too_many_concurrent_requests","message":"slow"}}',
            ProviderRateLimitedError,
            "slow",
        ),
    ],
)
def test_elevenlabs_errors(
    status: int, body: bytes, expected: type[Exception], message: str
) -> None:
    error = elevenlabs.map_error(status, {"retry-after": "3"}, body)
    assert type(error) is expected and message in error.message
    assert error.retry_after == 3.0


def test_retry_after_forms() -> None:
    assert retry_after({"retry-after-ms": "1500", "retry-after": "9"}) == 1.5
    assert retry_after({"retry-after": "2.5"}) == 2.5
    assert retry_after({"retry-after": "Wed, 21 Oct 2015 07:28:00 GMT"}) == 0.0  # in the past
    assert retry_after({"retry-after": "soon"}) is None
    assert retry_after({}) is None
