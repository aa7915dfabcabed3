"""The one door the OneFlow product uses to reach the fake providers.

Development's demo mode (`FAKE_PROVIDERS`, `oneflow_ai/gateway/wiring.py`) starts
`FakeProviders` in the gateway's own event loop, and `oneflow fake-providers`
(`oneflow_ai/cli.py`) runs `serve` in the foreground; both import this module lazily, and
nothing else of this package (an import-linter contract in pyproject.toml keeps it so). Tests
use the whole package (`oneflow_fakes`).
"""

from oneflow_fakes.config import FakeConfig
from oneflow_fakes.server import FakeProviders, serve

__all__ = ["FakeConfig", "FakeProviders", "serve"]
