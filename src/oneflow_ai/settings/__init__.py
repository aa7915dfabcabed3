"""Settings: one pydantic-settings root (`Settings`), read from the environment and an
optional `.env`.

- `settings/values.py`: the constants and value shapes (`ProviderSettings`, `CachePolicy`);
- `settings/groups.py`: the fields, one class per concern, with their checks;
- `settings/root.py`: `Settings`, which combines the groups, the rules across them (production
  refuses default secrets), the derived views, and `load_settings`.

Every name below is imported from `oneflow_ai.settings`, as before the split.
"""

from oneflow_ai.settings.root import Settings, load_settings
from oneflow_ai.settings.values import (
    DEFAULT_ELEVENLABS_VOICES,
    DEFAULT_JWT_SECRET,
    DEFAULT_MASTER_KEY,
    EMBEDDED_DATABASE_NAME,
    PROVIDERS,
    CachePolicy,
    Environment,
    ProviderSettings,
    SemanticPolicy,
    SettingsError,
    normalize_database_url,
    user_data_dir,
)

__all__ = [
    "DEFAULT_ELEVENLABS_VOICES",
    "DEFAULT_JWT_SECRET",
    "DEFAULT_MASTER_KEY",
    "EMBEDDED_DATABASE_NAME",
    "PROVIDERS",
    "CachePolicy",
    "Environment",
    "ProviderSettings",
    "SemanticPolicy",
    "Settings",
    "SettingsError",
    "load_settings",
    "normalize_database_url",
    "user_data_dir",
]
