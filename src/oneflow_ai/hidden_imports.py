"""`hidden`: import a dependency with some of its optional imports hidden from it.

A few dependencies import optional packages the moment they are installed, whether or not they
are ever used, and a serving process pays for them in memory:

- structlog imports ``rich`` (for its console tracebacks): ~3 MiB of the serving process;
  OneFlow's logs format exceptions themselves before any renderer sees them
  (`observability/logging.py`).
- redis-py imports OpenTelemetry's metrics SDK (to offer its own client metrics, which OneFlow
  does not turn on): ~0.8 MiB.

Inside ``with hidden("rich"):`` an ``import rich`` raises ``ImportError`` (as if it were not
installed) unless something imported it already; afterwards it is importable again (the CLI's
help uses rich, OneFlow's tracing OpenTelemetry's SDK).
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager

__all__ = ["hidden"]


@contextmanager
def hidden(*names: str) -> Iterator[None]:
    """Hide the modules ``names`` (not imported yet) from the imports inside the block."""
    hide = [name for name in names if name not in sys.modules]
    for name in hide:
        sys.modules[name] = None  # type: ignore[assignment]  # import name -> ImportError
    try:
        yield
    finally:
        for name in hide:
            if name in sys.modules and sys.modules[name] is None:
                del sys.modules[name]
