"""A fake provider server per test (a real HTTP server on a free loopback port)."""

from __future__ import annotations

from collections.abc import Iterator

import anthropic
import openai
import pytest

from oneflow_ai.providers.fakes import FakeProviders


@pytest.fixture
def fake() -> Iterator[FakeProviders]:
    with FakeProviders() as running:
        yield running


@pytest.fixture
def openai_client(fake: FakeProviders) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(base_url=fake.base_urls["openai"], api_key="sk-test", max_retries=0) as c:
        yield c


@pytest.fixture
def anthropic_client(fake: FakeProviders) -> Iterator[anthropic.Anthropic]:
    client = anthropic.Anthropic(
        base_url=fake.base_urls["anthropic"], api_key="sk-ant-test", max_retries=0
    )
    with client:
        yield client
