"""The web console at `/console`: static pages and ES modules served from the package.

See `docs/console.md` for what it shows and `docs/architecture.md` for how it is built.
"""

from oneflow_ai.console.router import CONSOLE_PATH, router

__all__ = ["CONSOLE_PATH", "router"]
