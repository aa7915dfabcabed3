"""What the registry needs to know to run one provider: its name, fixed headers and factory."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from oneflow_ai.providers.base import Provider
from oneflow_ai.providers.upstream import UpstreamClient
from oneflow_ai.settings import Settings

__all__ = ["ProviderSpec"]


@dataclass(frozen=True, slots=True)
class ProviderSpec:
    """`name` is the catalog's provider name and the prefix of its settings
    (`{NAME}_API_KEY`, `{NAME}_BASE_URL`); `headers(api_key)` are sent with every request;
    `build(client, settings)` makes the adapter over its upstream client."""

    name: str
    headers: Callable[[str], dict[str, str]]
    build: Callable[[UpstreamClient, Settings], Provider]
