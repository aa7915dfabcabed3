"""One fake provider server for the session (a real HTTP server on a free loopback port),
emptied before each test, and official SDK clients pointed at it."""

from __future__ import annotations

from collections.abc import Iterator

import anthropic
import httpx
import openai
import pytest

from oneflow_fakes import FakeProviders


@pytest.fixture(scope="session")
def _shared_fake() -> Iterator[FakeProviders]:
    with FakeProviders() as running:
        yield running


@pytest.fixture
def fake(_shared_fake: FakeProviders) -> FakeProviders:
    _shared_fake.reset()
    return _shared_fake


@pytest.fixture(scope="session")
def _openai_client(_shared_fake: FakeProviders) -> Iterator[openai.OpenAI]:
    base_url = _shared_fake.base_urls["openai"]
    with openai.OpenAI(base_url=base_url, api_key="sk-test", max_retries=0) as client:
        yield client


@pytest.fixture
def openai_client(fake: FakeProviders, _openai_client: openai.OpenAI) -> openai.OpenAI:
    return _openai_client


@pytest.fixture(scope="session")
def _anthropic_client(_shared_fake: FakeProviders) -> Iterator[anthropic.Anthropic]:
    base_url = _shared_fake.base_urls["anthropic"]
    with anthropic.Anthropic(base_url=base_url, api_key="sk-ant-test", max_retries=0) as client:
        yield client


@pytest.fixture
def anthropic_client(
    fake: FakeProviders, _anthropic_client: anthropic.Anthropic
) -> anthropic.Anthropic:
    return _anthropic_client


@pytest.fixture(scope="session")
def http() -> Iterator[httpx.Client]:
    """One pooled client (a module-level `httpx.post` builds a client, TLS context included,
    on every call)."""
    with httpx.Client() as client:
        yield client
