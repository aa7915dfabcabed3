"""Fake OpenAI, Anthropic, Stability AI and ElevenLabs servers: real HTTP on loopback.

One aiohttp application answers all four providers' endpoints in their wire formats, under
path prefixes that match each official SDK's `base_url` convention:

- OpenAI, base URL `http://HOST:PORT/openai/v1`: `POST /chat/completions`,
  `POST /images/generations`, `GET /models`;
- Anthropic, base URL `http://HOST:PORT/anthropic`: `POST /v1/messages`;
- Stability AI, base URL `http://HOST:PORT/stability`:
  `POST /v1/generation/{engine}/text-to-image`, `POST /v2beta/stable-image/generate/sd3`;
- ElevenLabs, base URL `http://HOST:PORT/elevenlabs`: `POST /v1/text-to-speech/{voice_id}`
  and its `/stream` variant.

Faults are chosen per request by `x-fake-*` headers or by rules installed through the
`/_fake` control plane; see `faults.py` and docs/fake-providers.md.
"""

from oneflow_fakes.app import create_fake_app
from oneflow_fakes.calls import CallRecord
from oneflow_fakes.config import FakeConfig
from oneflow_fakes.control import base_urls
from oneflow_fakes.faults import HEADERS, Fault, FaultRule
from oneflow_fakes.server import FakeProviders, serve
from oneflow_fakes.text import count_tokens

__all__ = [
    "HEADERS",
    "CallRecord",
    "FakeConfig",
    "FakeProviders",
    "Fault",
    "FaultRule",
    "base_urls",
    "count_tokens",
    "create_fake_app",
    "serve",
]
