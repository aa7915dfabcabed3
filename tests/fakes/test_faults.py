"""Fault injection: by `x-fake-*` header and by control-plane rule, as the official SDKs see it."""

from __future__ import annotations

import time

import anthropic
import httpx
import httpx2
import openai
import pytest

from oneflow_fakes import FakeConfig, FakeProviders

GPT = "gpt-4o"
OPUS = "claude-3-opus-20240229"
USER = [{"role": "user", "content": "Tell me about otters please"}]


def _chat(client: openai.OpenAI, **kwargs: object) -> openai.types.chat.ChatCompletion:
    return client.chat.completions.create(model=GPT, messages=USER, **kwargs)  # type: ignore[call-overload,no-any-return]


def _message(client: anthropic.Anthropic, **kwargs: object) -> anthropic.types.Message:
    arguments: dict[str, object] = {"model": OPUS, "max_tokens": 100, "messages": USER, **kwargs}
    return client.messages.create(**arguments)  # type: ignore[call-overload,no-any-return]


# ---- error statuses ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "error", "code"),
    [
        (400, openai.BadRequestError, None),
        (401, openai.AuthenticationError, "invalid_api_key"),
        (403, openai.PermissionDeniedError, "unsupported_country_region_territory"),
        (404, openai.NotFoundError, "model_not_found"),
        (429, openai.RateLimitError, "rate_limit_exceeded"),
        (500, openai.InternalServerError, None),
        (503, openai.InternalServerError, None),
    ],
)
def test_openai_status_faults(
    openai_client: openai.OpenAI, status: int, error: type[openai.APIStatusError], code: str | None
) -> None:
    with pytest.raises(error) as caught:
        _chat(openai_client, extra_headers={"x-fake-status": str(status)})
    assert caught.value.status_code == status
    assert caught.value.code == code
    assert caught.value.request_id and caught.value.request_id.startswith("req_")
    body = caught.value.response.json()
    assert set(body["error"]) == {"message", "type", "param", "code"}


def test_openai_rate_limit_with_retry_after(openai_client: openai.OpenAI) -> None:
    headers = {"x-fake-status": "429", "x-fake-retry-after": "2"}
    with pytest.raises(openai.RateLimitError) as caught:
        _chat(openai_client, extra_headers=headers)
    response = caught.value.response
    assert response.headers["retry-after"] == "2"
    assert response.headers["x-ratelimit-remaining-requests"] == "0"
    assert "Rate limit reached for gpt-4o" in caught.value.message


def test_openai_error_type_alone_picks_its_status(openai_client: openai.OpenAI) -> None:
    with pytest.raises(openai.RateLimitError) as quota:
        _chat(openai_client, extra_headers={"x-fake-error-type": "insufficient_quota"})
    assert quota.value.code == "insufficient_quota" and quota.value.type == "insufficient_quota"
    with pytest.raises(openai.BadRequestError) as policy:
        openai_client.images.generate(
            model="dall-e-3",
            prompt="x",
            extra_headers={"x-fake-error-type": "content_policy_violation"},
        )
    assert policy.value.code == "content_policy_violation"


@pytest.mark.parametrize(
    ("status", "error", "kind"),
    [
        (400, anthropic.BadRequestError, "invalid_request_error"),
        (401, anthropic.AuthenticationError, "authentication_error"),
        (403, anthropic.PermissionDeniedError, "permission_error"),
        (404, anthropic.NotFoundError, "not_found_error"),
        (413, anthropic.APIStatusError, "request_too_large"),
        (429, anthropic.RateLimitError, "rate_limit_error"),
        (500, anthropic.InternalServerError, "api_error"),
        (529, anthropic.OverloadedError, "overloaded_error"),
    ],
)
def test_anthropic_status_faults(
    anthropic_client: anthropic.Anthropic,
    status: int,
    error: type[anthropic.APIStatusError],
    kind: str,
) -> None:
    with pytest.raises(error) as caught:
        _message(anthropic_client, extra_headers={"x-fake-status": str(status)})
    assert caught.value.status_code == status
    assert caught.value.type == kind  # type: ignore[attr-defined]
    assert caught.value.request_id and caught.value.request_id.startswith("req_")
    body = caught.value.body
    assert isinstance(body, dict) and body["type"] == "error"
    assert body["request_id"] == caught.value.request_id


def test_anthropic_overloaded_with_retry_after(anthropic_client: anthropic.Anthropic) -> None:
    headers = {"x-fake-status": "529", "x-fake-retry-after": "3"}
    with pytest.raises(anthropic.OverloadedError) as caught:
        _message(anthropic_client, extra_headers=headers)
    assert caught.value.response.headers["retry-after"] == "3"
    assert caught.value.body["error"] == {"type": "overloaded_error", "message": "Overloaded"}  # type: ignore[index]


def test_fault_body_and_message_overrides(http: httpx.Client, fake: FakeProviders) -> None:
    fake.add_fault(provider="openai", status=502, body={"unexpected": "gateway page"})
    fake.add_fault(provider="anthropic", status=500, message="boom")
    url = f"{fake.base_urls['openai']}/chat/completions"
    response = http.post(url, json={}, headers={"Authorization": "Bearer k"})
    assert response.status_code == 502 and response.json() == {"unexpected": "gateway page"}
    response = http.post(f"{fake.base_urls['anthropic']}/v1/messages", json={})
    assert response.json()["error"] == {"type": "api_error", "message": "boom"}


def test_stability_and_elevenlabs_fault_shapes(http: httpx.Client, fake: FakeProviders) -> None:
    sd3 = f"{fake.base_urls['stability']}/v2beta/stable-image/generate/sd3"
    moderated = http.post(
        sd3,
        files={"none": ""},
        data={"prompt": "x"},
        headers={"Authorization": "Bearer k", "x-fake-status": "403"},
    )
    assert moderated.status_code == 403
    assert moderated.json()["name"] == "content_moderation"
    assert moderated.json()["errors"][0].startswith("Your request was flagged")
    v1 = f"{fake.base_urls['stability']}/v1/generation/stable-diffusion-xl-1024-v1-0/text-to-image"
    server = http.post(v1, json={}, headers={"x-fake-status": "500"})
    assert server.status_code == 500
    assert set(server.json()) == {"id", "name", "message"}
    tts = f"{fake.base_urls['elevenlabs']}/v1/text-to-speech/21m00Tcm4TlvDq8ikWAM"
    busy = http.post(
        tts, json={"text": "hi"}, headers={"x-fake-status": "429", "x-fake-retry-after": "1"}
    )
    assert busy.status_code == 429 and busy.headers["retry-after"] == "1"
    assert busy.json()["detail"]["status"] == "too_many_concurrent_requests"
    quota = http.post(tts, json={"text": "hi"}, headers={"x-fake-error-type": "quota_exceeded"})
    assert quota.status_code == 401 and quota.json()["detail"]["status"] == "quota_exceeded"


# ---- streams -----------------------------------------------------------------------------


def test_openai_stream_dropped_mid_way(openai_client: openai.OpenAI, fake: FakeProviders) -> None:
    received: list[str] = []
    with pytest.raises(openai.APIConnectionError):
        stream = _chat(openai_client, stream=True, extra_headers={"x-fake-drop-after-chunks": "3"})
        for chunk in stream:
            received.extend(c.delta.content or "" for c in chunk.choices)
    assert len([r for r in received if r]) == 3
    (call,) = fake.calls()
    assert call.outcome == "dropped" and call.chunks_sent == 3


def test_anthropic_stream_dropped_mid_way(
    anthropic_client: anthropic.Anthropic, fake: FakeProviders
) -> None:
    with (
        pytest.raises(httpx2.RemoteProtocolError, match="incomplete chunked read"),
        anthropic_client.messages.stream(
            model=OPUS,
            max_tokens=100,
            messages=USER,
            extra_headers={"x-fake-drop-after-chunks": "0"},
        ) as stream,
    ):
        for _ in stream:
            pass
    assert fake.calls()[0].outcome == "dropped"


def test_non_streamed_answer_dropped(openai_client: openai.OpenAI, fake: FakeProviders) -> None:
    with pytest.raises(openai.APIConnectionError):
        _chat(openai_client, extra_headers={"x-fake-drop-after-chunks": "0"})
    assert fake.calls()[0].outcome == "dropped"


def test_anthropic_overloaded_event_mid_stream(
    anthropic_client: anthropic.Anthropic, fake: FakeProviders
) -> None:
    texts: list[str] = []
    with (
        pytest.raises(anthropic.APIStatusError) as caught,
        anthropic_client.messages.stream(
            model=OPUS,
            max_tokens=100,
            messages=USER,
            extra_headers={"x-fake-error-after-chunks": "2"},
        ) as stream,
    ):
        texts.extend(stream.text_stream)
    assert len(texts) == 2
    assert caught.value.type == "overloaded_error"  # type: ignore[attr-defined]
    assert caught.value.body == {
        "type": "error",
        "error": {"type": "overloaded_error", "message": "Overloaded"},
    }
    assert fake.calls()[0].outcome == "stream_error"


def test_openai_error_event_mid_stream(openai_client: openai.OpenAI) -> None:
    with pytest.raises(openai.APIError) as caught:
        for _ in _chat(
            openai_client, stream=True, extra_headers={"x-fake-error-after-chunks": "1"}
        ):
            pass
    assert caught.value.type == "server_error"
    assert caught.value.message.startswith("The server had an error")


def test_timeout_hangs_until_the_client_gives_up(
    openai_client: openai.OpenAI, fake: FakeProviders
) -> None:
    with pytest.raises(openai.APITimeoutError):
        openai_client.with_options(timeout=0.3).chat.completions.create(
            model=GPT, messages=USER, extra_headers={"x-fake-timeout": "1"}
        )
    assert fake.calls()[0].outcome == "timeout"


def test_client_leaving_mid_stream_is_recorded(http: httpx.Client, fake: FakeProviders) -> None:
    body = {"model": GPT, "messages": USER, "stream": True}
    headers = {"Authorization": "Bearer k", "x-fake-chunk-delay-ms": "50"}
    url = f"{fake.base_urls['openai']}/chat/completions"
    with http.stream("POST", url, json=body, headers=headers) as response:
        lines = response.iter_lines()
        next(lines)
        next(lines)
    deadline = time.monotonic() + 5
    while fake.calls()[0].outcome == "pending" and time.monotonic() < deadline:
        time.sleep(0.02)
    assert fake.calls()[0].outcome == "client_closed"


def test_latency_and_time_to_first_token_are_added(openai_client: openai.OpenAI) -> None:
    # Lower bounds only: a delay can be longer on a busy machine, never shorter.
    started = time.monotonic()
    _chat(openai_client, extra_headers={"x-fake-latency-ms": "150"})
    assert time.monotonic() - started >= 0.15
    started = time.monotonic()
    stream = _chat(openai_client, stream=True, extra_headers={"x-fake-ttft-ms": "150"})
    first_content = next(c for c in stream if c.choices and c.choices[0].delta.content)
    assert first_content and time.monotonic() - started >= 0.15


def test_server_wide_latency_default() -> None:
    with FakeProviders(FakeConfig(latency_ms=120)) as fake:
        client = openai.OpenAI(base_url=fake.base_urls["openai"], api_key="k")
        started = time.monotonic()
        _chat(client)
        assert time.monotonic() - started >= 0.12
        assert fake.calls()[0].fault is None  # defaults are not faults


def test_bad_fault_header_is_a_clear_400(openai_client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        _chat(openai_client, extra_headers={"x-fake-status": "lots"})
    assert "x-fake-status" in caught.value.message
    with pytest.raises(openai.BadRequestError) as unknown:
        _chat(openai_client, extra_headers={"x-fake-colour": "red"})
    assert "unknown fault header" in unknown.value.message


# ---- rules -------------------------------------------------------------------------------


def test_rule_fails_the_next_calls_then_lets_the_sdk_retry_succeed(fake: FakeProviders) -> None:
    fake.add_fault(provider="openai", model=GPT, times=2, status=500, retry_after=0.05)
    client = openai.OpenAI(base_url=fake.base_urls["openai"], api_key="k", max_retries=2)
    reply = _chat(client)
    assert reply.choices[0].finish_reason == "stop"
    calls = fake.calls("openai", GPT)
    assert [c.status for c in calls] == [500, 500, 200]
    assert [c.headers["x-stainless-retry-count"] for c in calls] == ["0", "1", "2"]
    (rule,) = fake.faults()
    assert rule["remaining"] == 0 and rule["hits"] == 2


def test_rules_match_provider_model_glob_and_streaming(
    fake: FakeProviders, openai_client: openai.OpenAI, anthropic_client: anthropic.Anthropic
) -> None:
    fake.add_fault(provider="anthropic", model="claude-3-*", stream=True, status=529)
    _chat(openai_client)
    _message(anthropic_client)  # not streamed: no fault
    with pytest.raises(anthropic.OverloadedError):
        _message(anthropic_client, stream=True)
    with pytest.raises(anthropic.OverloadedError):
        _message(anthropic_client, model="claude-3-haiku-20240307", stream=True)


def test_probability_is_reproducible_with_a_seed() -> None:
    outcomes = []
    for _ in range(2):
        with FakeProviders() as fake:
            fake.add_fault(provider="openai", probability=0.5, seed=11, status=503)
            client = openai.OpenAI(base_url=fake.base_urls["openai"], api_key="k", max_retries=0)
            run = []
            for _ in range(20):
                try:
                    _chat(client)
                    run.append(True)
                except openai.InternalServerError:
                    run.append(False)
            outcomes.append(run)
    assert outcomes[0] == outcomes[1]
    assert 0 < outcomes[0].count(False) < 20


def test_control_plane_over_http(
    http: httpx.Client, fake: FakeProviders, openai_client: openai.OpenAI
) -> None:
    control = f"{fake.url}/_fake"
    bad = http.post(f"{control}/faults", json={"provider": "openai", "statuss": 500})
    assert bad.status_code == 400 and "statuss" in bad.json()["error"]
    installed = http.post(
        f"{control}/faults",
        json={"rules": [{"provider": "openai", "times": 1, "status": 429, "retry_after": 7}]},
    )
    assert installed.status_code == 201
    (rule_id,) = installed.json()["ids"]
    with pytest.raises(openai.RateLimitError) as caught:
        _chat(openai_client, extra_headers={"Idempotency-Key": "idem-1", "x-request-id": "gw-1"})
    assert caught.value.response.headers["retry-after"] == "7"
    _chat(openai_client, extra_headers={"Idempotency-Key": "idem-2"})
    rules = http.get(f"{control}/faults").json()["rules"]
    assert rules == [
        {
            "id": rule_id,
            "provider": "openai",
            "times": 1,
            "status": 429,
            "retry_after": 7.0,
            "remaining": 0,
            "hits": 1,
        }
    ]
    log = http.get(f"{control}/calls", params={"provider": "openai"}).json()
    assert log["total"] == 2
    assert log["counts"] == {"openai": {GPT: 2}}
    first, second = log["calls"]
    assert first["idempotency_key"] == "idem-1" and first["client_request_id"] == "gw-1"
    assert first["status"] == 429 and first["fault"]["status"] == 429
    assert second["idempotency_key"] == "idem-2" and second["status"] == 200
    assert second["body"]["messages"] == USER
    assert second["headers"]["authorization"] == "***test"  # only the last four characters
    assert http.delete(f"{control}/faults/{rule_id}").status_code == 200
    assert http.delete(f"{control}/faults/{rule_id}").status_code == 404
    http.post(f"{control}/faults", json={"status": 500})
    assert http.post(f"{control}/reset").status_code == 200
    assert http.get(f"{control}/faults").json() == {"rules": []}
    assert http.get(f"{control}/calls").json()["total"] == 0
    info = http.get(control).json()
    assert info["base_urls"] == fake.base_urls


def test_servers_in_one_process_are_independent() -> None:
    with FakeProviders() as one, FakeProviders() as two:
        one.add_fault(status=500)
        first = openai.OpenAI(base_url=one.base_urls["openai"], api_key="k", max_retries=0)
        second = openai.OpenAI(base_url=two.base_urls["openai"], api_key="k", max_retries=0)
        with pytest.raises(openai.InternalServerError):
            _chat(first)
        assert _chat(second).choices
        assert (one.call_count(), two.call_count()) == (1, 1)


async def test_in_the_running_loop() -> None:
    async with FakeProviders() as fake:
        fake.add_fault(provider="openai", times=1, status=429)
        client = openai.AsyncOpenAI(base_url=fake.base_urls["openai"], api_key="k", max_retries=0)
        with pytest.raises(openai.RateLimitError):
            await client.chat.completions.create(model=GPT, messages=USER)
        reply = await client.chat.completions.create(model=GPT, messages=USER)
        assert reply.choices and fake.call_count("openai", GPT) == 2
        await client.close()


def test_settings_overrides_point_the_gateway_at_the_fakes(fake: FakeProviders) -> None:
    from oneflow_ai.settings import Settings

    settings = Settings(_env_file=None, **fake.settings_overrides())  # type: ignore[arg-type, call-arg]
    openai_settings = settings.provider("openai")
    assert openai_settings.base_url == f"{fake.url}/openai/v1"
    assert openai_settings.configured
    assert settings.provider("anthropic").base_url == f"{fake.url}/anthropic"
    assert fake.env()["ELEVENLABS_BASE_URL"] == f"{fake.url}/elevenlabs"
