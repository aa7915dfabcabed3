"""What the registry needs to know to run one provider: its name, how it is reached and
authenticated, and how its adapter is built.

Built-in providers are reached through their `{NAME}_API_KEY` / `{NAME}_BASE_URL` settings;
a provider declared in the catalog (`compatible.py`) brings its own connection.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from oneflow_ai.catalog import AuthStyle
from oneflow_ai.providers.base import Provider
from oneflow_ai.providers.upstream import UpstreamClient
from oneflow_ai.settings import ProviderSettings, Settings

__all__ = ["JSON_HEADERS", "ProviderSpec", "auth_headers"]

#: Sent with every request of a JSON API.
JSON_HEADERS = {"Content-Type": "application/json", "Accept": "application/json"}


def auth_headers(style: AuthStyle, api_key: str | None) -> dict[str, str]:
    """The credential headers of `style` (`catalog.AuthStyle`; none without a key)."""
    if not api_key or style == "none":
        return {}
    if style == "api-key":
        return {"api-key": api_key}
    return {"Authorization": f"Bearer {api_key}"}


@dataclass(frozen=True, slots=True)
class ProviderSpec:
    """`name` is the catalog's provider name; `headers(api_key)` are sent with every request
    (`api_key` is "" for a provider that takes none); `build(client, settings)` makes the
    adapter over its upstream client. `connect(settings)` says how to reach the provider, or
    None when it is not configured; without it, the settings' `{NAME}_*` variables do."""

    name: str
    headers: Callable[[str], dict[str, str]]
    build: Callable[[UpstreamClient, Settings], Provider]
    connect: Callable[[Settings], ProviderSettings | None] | None = None

    def connection(self, settings: Settings) -> ProviderSettings | None:
        """How to reach this provider with `settings`, or None: it is not configured."""
        if self.connect is not None:
            return self.connect(settings)
        provider = settings.provider(self.name)
        return provider if provider.configured else None
