"""OpenAI-compatible providers by configuration: no code of their own.

Each provider the catalog declares under `providers:` (`catalog.ProviderEntry`: a base URL, an
auth style, extra headers and query parameters) becomes a `ProviderSpec` whose adapter is the
engine's `ChatProvider` running the OpenAI wire (`openai.OpenAIWire`) under the provider's own
name: same request and answer transforms, same streams, same error mapping, its own pooled
client, circuit breakers and metrics label; its embedding models are served by OpenAI's
Embeddings API the same way (`openai_embeddings.py`). Its `chat_path` may name the model in the
URL (`{deployment}`: Azure OpenAI's deployment names), replaced by the name the provider knows
the model by, URL-quoted. Its key comes from the setting `PROVIDER_API_KEYS` (by provider
name); a provider whose auth takes a key and has none is not started (logged), and its models
answer as not available.
"""

from __future__ import annotations

from collections.abc import Callable
from urllib.parse import quote

import structlog

from oneflow_ai.catalog import DEPLOYMENT_PLACEHOLDER, Catalog, ProviderEntry
from oneflow_ai.providers.engine import ChatProvider
from oneflow_ai.providers.openai import OpenAIWire
from oneflow_ai.providers.openai_embeddings import EmbeddingsMixin
from oneflow_ai.providers.spec import JSON_HEADERS, ProviderSpec, auth_headers
from oneflow_ai.providers.upstream import UpstreamClient
from oneflow_ai.settings import ProviderSettings, Settings

__all__ = ["CompatibleProvider", "compatible_spec", "compatible_specs"]

log = structlog.get_logger("oneflow.providers")


class CompatibleProvider(EmbeddingsMixin, ChatProvider):
    """Chat and embeddings on an OpenAI-compatible API."""


def compatible_specs(catalog: Catalog) -> tuple[ProviderSpec, ...]:
    """The specs of the providers `catalog` declares, in its order."""
    return tuple(compatible_spec(entry) for entry in catalog.providers.values())


def compatible_spec(entry: ProviderEntry) -> ProviderSpec:
    """How to run the provider `entry` declares."""

    def headers(api_key: str) -> dict[str, str]:
        return {**JSON_HEADERS, **auth_headers(entry.auth, api_key), **entry.headers}

    def build(client: UpstreamClient, settings: Settings) -> ChatProvider:
        return CompatibleProvider(
            client, OpenAIWire(entry.name), path_for=_path_for(entry.chat_path)
        )

    def connect(settings: Settings) -> ProviderSettings | None:
        key = settings.provider_api_keys.get(entry.name) if entry.auth != "none" else None
        if entry.auth != "none" and (key is None or not key.get_secret_value()):
            log.warning(
                "provider_not_configured",
                provider=entry.name,
                hint=f"its auth is {entry.auth}: give its key in PROVIDER_API_KEYS",
            )
            return None
        return ProviderSettings(
            name=entry.name,
            api_key=key,
            base_url=entry.base_url,
            connect_timeout=entry.connect_timeout or settings.upstream_connect_timeout,
            read_timeout=entry.read_timeout or settings.upstream_read_timeout,
            max_connections=settings.upstream_max_connections,
            query=entry.query,
        )

    return ProviderSpec(name=entry.name, headers=headers, build=build, connect=connect)


def _path_for(template: str) -> Callable[[str], str] | None:
    """The endpoint of each model (`{deployment}` in `template` names it); None for the
    wire's own."""
    if template == OpenAIWire.path:
        return None
    if DEPLOYMENT_PLACEHOLDER not in template:
        return lambda _model: template
    head, _, tail = template.partition(DEPLOYMENT_PLACEHOLDER)
    return lambda model: f"{head}{quote(model, safe='')}{tail}"
