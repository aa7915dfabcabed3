"""OpenAI-compatible providers declared in the catalog, with no code of their own.

Three fake OpenAI servers at base URLs of their own stand for a Groq-like API (a bearer key),
an Azure OpenAI deployment (an `api-key` header and an `api-version` query parameter) and a
server of one's own (no key, free). Each is a catalog entry; the official SDKs call their
models through both dialects, plain and streamed, and every call is priced at the entry's
prices.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path

import anthropic
import httpx
import openai
import pytest

from oneflow_ai.app import create_app
from oneflow_ai.settings import DEFAULT_MASTER_KEY, Settings
from oneflow_fakes import FakeProviders
from tests.support.databases import migrated_sqlite_url
from tests.support.server import LiveServer, live_server

KEY = DEFAULT_MASTER_KEY
GROQ_KEY = "gsk-compatible-test-key"
AZURE_KEY = "azure-compatible-test-key"
#: model -> (provider, the fake it reaches, USD per million input and output tokens)
MODELS = {
    "llama-3.1-8b-instant": ("groq", "bearer", Decimal("0.05"), Decimal("0.08")),
    "azure-gpt-4o": ("azure", "api-key", Decimal("2.50"), Decimal("10.00")),
    "llama3.2": ("ollama", "none", Decimal(0), Decimal(0)),
    "gpt-4o-eastus": ("azure-deployments", "api-key", Decimal("2.50"), Decimal("10.00")),
}
CATALOG = """
sources:
  operator:
    url: https://example.com/our-prices
providers:
  groq:
    base_url: {bearer}
    auth: bearer
  azure:
    base_url: {api_key}
    auth: api-key
    query: {{api-version: "2024-10-21"}}
    headers: {{x-ms-useragent: oneflow-test}}
  ollama:
    base_url: {none}
    auth: none
  azure-deployments:
    base_url: {api_key_root}
    auth: api-key
    chat_path: /openai/deployments/{{deployment}}/chat/completions
    query: {{api-version: "2024-10-21"}}
  unkeyed:
    base_url: {bearer}
    auth: bearer
  offline:
    base_url: http://127.0.0.1:{closed_port}/v1
    auth: none
models:
  llama-3.1-8b-instant:
    {common}
    pricing: {{input_per_mtok: "0.05", output_per_mtok: "0.08"}}
    price_source: operator
    provider: groq
  azure-gpt-4o:
    {common}
    pricing: {{input_per_mtok: "2.50", output_per_mtok: "10.00"}}
    price_source: operator
    provider: azure
  llama3.2:
    {common}
    free: true
    provider: ollama
  gpt-4o-eastus:
    {common}
    pricing: {{input_per_mtok: "2.50", output_per_mtok: "10.00"}}
    price_source: operator
    provider: azure-deployments
  azure-embedding:
    provider: azure
    modality: embedding
    context_window: 8192
    tokenizer: cl100k_base
    dimensions: 1024
    quality: 0.5
    latency: {{ttft_ms: 100}}
    pricing: {{input_per_mtok: "0.02"}}
    price_source: operator
  orphan-model:
    {common}
    free: true
    provider: unkeyed
  offline-model:
    {common}
    free: true
    provider: offline
"""
COMMON = (
    "modality: text\n    context_window: 128000\n    max_output_tokens: 4096\n"
    "    tokenizer: cl100k_base\n    quality: 0.5\n    latency: {ttft_ms: 300}"
)


@dataclass
class World:
    server: LiveServer
    fakes: dict[str, FakeProviders]  # by the auth style each wants

    def openai(self) -> openai.OpenAI:
        return openai.OpenAI(base_url=f"{self.server.url}/v1", api_key=KEY, max_retries=0)

    def anthropic(self) -> anthropic.Anthropic:
        return anthropic.Anthropic(base_url=self.server.url, api_key=KEY, max_retries=0)


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    directory = Path(tmp_path_factory.mktemp("compatible"))
    with (
        FakeProviders(openai_auth="bearer", api_key=GROQ_KEY, any_model=True) as bearer,
        FakeProviders(openai_auth="api-key", api_key=AZURE_KEY, any_model=True) as api_key,
        FakeProviders(openai_auth="none", any_model=True) as none,
    ):
        fakes = {"bearer": bearer, "api-key": api_key, "none": none}
        catalog = directory / "catalog.yaml"
        catalog.write_text(
            CATALOG.format(
                bearer=bearer.base_urls["openai"],
                api_key=api_key.base_urls["openai"],
                none=none.base_urls["openai"],
                api_key_root=api_key.url,
                closed_port=_closed_port(),
                common=COMMON,
            )
        )
        settings = Settings(
            _env_file=None,  # type: ignore[call-arg]
            database_url=migrated_sqlite_url(directory / "oneflow.db"),
            log_format="json",
            fake_providers="off",
            catalog_path=catalog,
            provider_api_keys={
                "groq": GROQ_KEY,
                "azure": AZURE_KEY,
                "azure-deployments": AZURE_KEY,
            },
        )
        with live_server(create_app(settings, configure_logs=False)) as server:
            yield World(server, fakes)


def _closed_port() -> int:
    """A loopback port nothing listens on (bound, then released)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


@pytest.fixture
def fresh(world: World) -> World:
    for fake in world.fakes.values():
        fake.reset()
    return world


def _credits(model: str, input_tokens: int, output_tokens: int) -> Decimal:
    _provider, _auth, input_price, output_price = MODELS[model]
    usd = (input_tokens * input_price + output_tokens * output_price) / 1_000_000
    return usd * 100


def _only_call(world: World, model: str) -> dict[str, str]:
    """The one request the model's fake received, its headers and query."""
    _provider, auth, _in, _out = MODELS[model]
    (call,) = world.fakes[auth].calls("openai")
    assert call.outcome == "ok" and call.model == model
    return {**call.headers, **{f"?{k}": v for k, v in call.query.items()}}


@pytest.mark.parametrize("model", list(MODELS))
def test_a_configured_model_answers_in_the_openai_dialect(fresh: World, model: str) -> None:
    raw = fresh.openai().chat.completions.with_raw_response.create(
        model=model, messages=[{"role": "user", "content": "Hello there"}], max_tokens=50
    )
    completion = raw.parse()
    assert completion.choices[0].message.content
    assert completion.usage is not None
    provider = MODELS[model][0]
    assert (raw.headers["x-oneflow-model"], raw.headers["x-oneflow-provider"]) == (model, provider)
    usage = completion.usage
    expected = _credits(model, usage.prompt_tokens, usage.completion_tokens)
    assert Decimal(raw.headers["x-oneflow-credits"]) == expected
    # Each fake accepts only its own key, in its own header: the answer proves both; here,
    # that nothing else was sent.
    sent = _only_call(fresh, model)
    if provider == "groq":
        assert "authorization" in sent and "api-key" not in sent
    elif provider.startswith("azure"):
        assert "api-key" in sent and "authorization" not in sent
        assert sent["?api-version"] == "2024-10-21"
        if provider == "azure":
            assert sent["x-ms-useragent"] == "oneflow-test"
    else:
        assert "authorization" not in sent and "api-key" not in sent


@pytest.mark.parametrize("model", list(MODELS))
def test_a_configured_model_streams_to_the_openai_sdk(fresh: World, model: str) -> None:
    stream = fresh.openai().chat.completions.create(
        model=model,
        messages=[{"role": "user", "content": "Stream to me"}],
        max_tokens=50,
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text.strip()
    last = chunks[-1]
    assert last.usage is not None
    credits = Decimal((last.model_extra or {})["oneflow"]["credits"])
    assert credits == _credits(model, last.usage.prompt_tokens, last.usage.completion_tokens)
    assert _only_call(fresh, model)  # reached its own fake, with its own credentials


def test_the_anthropic_sdk_reaches_a_configured_model(fresh: World) -> None:
    message = fresh.anthropic().messages.create(
        model="azure-gpt-4o", max_tokens=50, messages=[{"role": "user", "content": "Hi"}]
    )
    assert message.content[0].type == "text" and message.content[0].text
    assert message.usage.output_tokens > 0
    assert _only_call(fresh, "azure-gpt-4o")["?api-version"] == "2024-10-21"
    with fresh.anthropic().messages.stream(
        model="llama3.2", max_tokens=50, messages=[{"role": "user", "content": "Hi"}]
    ) as stream:
        text = "".join(stream.text_stream)
    assert text.strip()


def test_configured_models_are_listed_and_one_without_its_key_is_not_available(
    fresh: World,
) -> None:
    listed = {model.id: model.owned_by for model in fresh.openai().models.list()}
    assert {m: listed.get(m) for m in MODELS} == {m: p for m, (p, *_rest) in MODELS.items()}
    assert "orphan-model" not in listed  # its provider's key is not configured
    with pytest.raises(openai.NotFoundError) as caught:
        fresh.openai().chat.completions.create(
            model="orphan-model", messages=[{"role": "user", "content": "Hi"}]
        )
    assert "unkeyed" in caught.value.message
    assert fresh.fakes["bearer"].call_count() == 0


def test_a_refused_key_is_the_providers_auth_failure(world: World, tmp_path: Path) -> None:
    catalog = tmp_path / "catalog.yaml"
    catalog.write_text(
        "providers:\n"
        f"  groq:\n    base_url: {world.fakes['bearer'].base_urls['openai']}\n    auth: bearer\n"
        f"models:\n  llama-3.1-8b-instant:\n    {COMMON}\n    free: true\n    provider: groq\n"
    )
    settings = Settings(
        _env_file=None,  # type: ignore[call-arg]
        database_url=migrated_sqlite_url(tmp_path / "oneflow.db"),
        fake_providers="off",
        upstream_max_retries=0,
        catalog_path=catalog,
        provider_api_keys={"groq": "gsk-a-wrong-key"},
    )
    with live_server(create_app(settings, configure_logs=False)) as server:
        client = openai.OpenAI(base_url=f"{server.url}/v1", api_key=KEY, max_retries=0)
        with pytest.raises(openai.APIStatusError) as caught:
            client.chat.completions.create(
                model="llama-3.1-8b-instant", messages=[{"role": "user", "content": "Hi"}]
            )
    assert caught.value.status_code == 502
    assert "groq" in caught.value.message and "credentials" in caught.value.message


def test_a_deployment_name_url_reaches_the_deployment(fresh: World) -> None:
    client = fresh.openai()
    answer = client.chat.completions.create(
        model="gpt-4o-eastus", messages=[{"role": "user", "content": "Hello Azure"}]
    )
    assert answer.choices[0].message.content
    chunks = list(
        client.chat.completions.create(
            model="gpt-4o-eastus",
            messages=[{"role": "user", "content": "Hello Azure"}],
            stream=True,
        )
    )
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices).strip()
    calls = fresh.fakes["api-key"].calls("openai")
    assert [call.path for call in calls] == [
        "/openai/deployments/gpt-4o-eastus/chat/completions"
    ] * 2
    assert all(call.query == {"api-version": "2024-10-21"} for call in calls)
    assert all(call.outcome == "ok" and call.model == "gpt-4o-eastus" for call in calls)


def test_an_unreachable_provider_is_a_readiness_warning_not_a_stop(fresh: World) -> None:
    ready = httpx.get(f"{fresh.server.url}/ready", timeout=10)
    assert ready.status_code == 200, ready.text
    body = ready.json()
    assert body["status"] == "ready"
    assert body["providers"]["offline"]["status"] == "unreachable"
    assert {body["providers"][name]["status"] for name in ("groq", "azure", "ollama")} == {"ok"}
    (warning,) = body["warnings"]
    assert warning.startswith("provider offline (127.0.0.1:") and "unreachable" in warning
    # Its model is served like any other: a call fails over as an upstream outage, a 502/503.
    with pytest.raises(openai.APIStatusError) as caught:
        fresh.openai().chat.completions.create(
            model="offline-model", messages=[{"role": "user", "content": "Hi"}]
        )
    assert caught.value.status_code in (502, 503)


def test_a_configured_embedding_model_answers(fresh: World) -> None:
    raw = fresh.openai().embeddings.with_raw_response.create(
        model="azure-embedding", input=["one", "two"]
    )
    answer = raw.parse()
    assert [len(item.embedding) for item in answer.data] == [1024, 1024]
    assert raw.headers["x-oneflow-provider"] == "azure"
    tokens = answer.usage.prompt_tokens
    assert Decimal(raw.headers["x-oneflow-credits"]) == Decimal(tokens * 2) / 1_000_000
    (call,) = fresh.fakes["api-key"].calls("openai")
    assert call.path.endswith("/embeddings") and call.model == "azure-embedding"
    assert "api-key" in call.headers and call.query["api-version"] == "2024-10-21"


@pytest.mark.parametrize("stream", [False, True])
def test_the_responses_api_reaches_a_configured_model_through_chat_completions(
    fresh: World, stream: bool
) -> None:
    """An OpenAI-compatible API is bridged onto its Chat Completions (few serve /responses)."""
    client = fresh.openai()
    asked = {"model": "llama-3.1-8b-instant", "input": "Hello there", "instructions": "Be kind"}
    if stream:
        with client.responses.stream(**asked) as events:
            response = events.get_final_response()
    else:
        response = client.responses.create(**asked)
    assert response.output_text.startswith("Echo: Hello there")
    (call,) = fresh.fakes["bearer"].calls("openai")
    assert call.path.endswith("/chat/completions")
    assert call.body["messages"] == [  # type: ignore[index]
        {"role": "system", "content": "Be kind"},
        {"role": "user", "content": "Hello there"},
    ]
    refused = client.responses.with_raw_response
    with pytest.raises(openai.BadRequestError) as built_in:
        refused.create(model="llama-3.1-8b-instant", input="x", tools=[{"type": "web_search"}])
    assert built_in.value.body["param"] == "tools[0]"  # type: ignore[index]
