"""The settings' values and constants: the development defaults production refuses, the
providers, the shapes a setting can take (`ProviderSettings`, `CachePolicy`), and the helpers
that read a path or a database URL."""

from __future__ import annotations

import enum
import os
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, SecretStr

__all__ = [
    "DEFAULT_BASE_URLS",
    "DEFAULT_ELEVENLABS_VOICES",
    "DEFAULT_JWT_SECRET",
    "DEFAULT_MASTER_KEY",
    "EMBEDDED_DATABASE_NAME",
    "LOG_LEVELS",
    "PROVIDERS",
    "CachePolicy",
    "Environment",
    "ProviderSettings",
    "SemanticPolicy",
    "SettingsError",
    "normalize_database_url",
    "user_data_dir",
]

# Known development defaults, not secrets: production refuses them.
DEFAULT_JWT_SECRET = "oneflow-development-jwt-secret-change-me"  # noqa: S105  # nosec B105
DEFAULT_MASTER_KEY = "sk-oneflow-dev-master-key"
EMBEDDED_DATABASE_NAME = "oneflow.db"

PROVIDERS = ("openai", "anthropic", "stability", "elevenlabs")
DEFAULT_BASE_URLS = {
    # Each follows its official SDK's convention: OpenAI's includes /v1, Anthropic's does not.
    "openai": "https://api.openai.com/v1",
    "anthropic": "https://api.anthropic.com",
    "stability": "https://api.stability.ai",
    "elevenlabs": "https://api.elevenlabs.io",
}
# ElevenLabs premade voices chosen to resemble OpenAI's voices of the same name.
DEFAULT_ELEVENLABS_VOICES: dict[str, str] = {
    "alloy": "21m00Tcm4TlvDq8ikWAM",  # Rachel
    "echo": "ErXwobaYiN019PkySvjV",  # Antoni
    "fable": "JBFqnCBsd6RMkjVDRZzb",  # George
    "onyx": "pNInz6obpgDQGcFmaJgB",  # Adam
    "nova": "EXAVITQu4vr4xnSDxMaL",  # Sarah
    "shimmer": "MF3mGyEYCl7XYWbV9V6O",  # Elli
    "ash": "TxGEqnHWrfWFTfGW9XjX",  # Josh
    "coral": "XrExE9yKIg1WjnnlVkGX",  # Matilda
    "sage": "pFZP5JQG7iQjIQuC4Bku",  # Lily
    "ballad": "onwK4e9ZLuTAKqWW03F9",  # Daniel
    "verse": "TX3LPaxmHKxFdv7VOQHJ",  # Liam
}
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")


class Environment(enum.StrEnum):
    DEVELOPMENT = "development"
    STAGING = "staging"
    PRODUCTION = "production"


@dataclass(frozen=True, slots=True)
class ProviderSettings:
    """What the gateway needs to reach one upstream provider."""

    name: str
    api_key: SecretStr | None
    base_url: str
    connect_timeout: float
    read_timeout: float
    max_connections: int = 1024
    query: Mapping[str, str] = field(default_factory=dict)  # sent with every request

    @property
    def configured(self) -> bool:
        return self.api_key is not None and bool(self.api_key.get_secret_value())


class SemanticPolicy(BaseModel):
    """The semantic cache of a policy (docs/cache.md#semantic-cache): the last user turn is
    embedded with ``model`` (an embedding model of the catalog, called and billed like any
    ``/v1/embeddings`` call of the caller) and a stored answer whose question is at least
    ``threshold`` similar (cosine, 0 to 1) answers it, within the same model, system prompt
    and earlier conversation."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    model: str = Field(min_length=1)
    threshold: float = Field(default=0.95, gt=0, le=1)


class CachePolicy(BaseModel):
    """Whether and how the response cache serves a project's or a key's calls
    (``CACHE_PROJECTS`` / ``CACHE_KEYS``; docs/cache.md).

    ``shared``: the project's keys share entries (otherwise each key has its own);
    ``allow_temperature``: cache answers asked for with ``temperature > 0`` too;
    ``coalesce``: identical requests arriving while the first is still being answered wait
    for its answer instead of calling the provider too (across replicas with Redis);
    ``ttl_seconds`` and ``hit_fraction`` replace the deployment's defaults; ``semantic``
    also answers paraphrases (``SemanticPolicy``)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    enabled: bool = True
    shared: bool = False
    allow_temperature: bool = False
    coalesce: bool = False
    ttl_seconds: int | None = Field(default=None, ge=1)
    hit_fraction: Decimal | None = Field(default=None, ge=0, le=1)
    semantic: SemanticPolicy | None = None


class SettingsError(Exception):
    """Invalid configuration; `str()` is one line naming the variable."""


def user_data_dir() -> Path:
    """OneFlow's folder in the platform's per-user data directory: `$XDG_DATA_HOME/oneflow`
    (`~/.local/share/oneflow`) on Linux and other Unix systems, `~/Library/Application
    Support/oneflow` on macOS, `%LOCALAPPDATA%\\oneflow` on Windows."""
    if sys.platform == "win32":
        base = os.environ.get("LOCALAPPDATA", "").strip()
        return (Path(base) if base else Path.home() / "AppData" / "Local") / "oneflow"
    if sys.platform == "darwin":
        return Path.home() / "Library" / "Application Support" / "oneflow"
    xdg = os.environ.get("XDG_DATA_HOME", "").strip()
    # The XDG specification ignores a relative path.
    base = Path(xdg) if xdg and Path(xdg).is_absolute() else Path.home() / ".local" / "share"
    return base / "oneflow"


def normalize_database_url(value: str) -> str:
    """Accept the common spellings and return the async driver URL; reject anything else."""
    url = value.strip()
    if url.startswith(("postgresql://", "postgres://")):
        url = "postgresql+asyncpg://" + url.split("://", 1)[1]
    elif url.startswith("sqlite://") and not url.startswith("sqlite+aiosqlite://"):
        url = "sqlite+aiosqlite://" + url.split("://", 1)[1]
    if not url.startswith(("postgresql+asyncpg://", "sqlite+aiosqlite://")):
        raise ValueError(
            f"unsupported database URL {_mask_url(value)!r}: use postgresql+asyncpg://... "
            "or sqlite+aiosqlite:///path"
        )
    if url.startswith("postgresql+asyncpg://") and len(url) <= len("postgresql+asyncpg://"):
        raise ValueError("PostgreSQL URL names no host")
    return url


def _mask_url(url: str) -> str:
    if "@" in url and "://" in url:
        scheme, rest = url.split("://", 1)
        return f"{scheme}://***@{rest.rsplit('@', 1)[1]}"
    return url
