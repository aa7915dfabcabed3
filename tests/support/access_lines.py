"""Reading a gateway's access lines from `structlog.testing.capture_logs`.

The edge writes a request's access line once the answer has been sent, so a client can hold
the whole answer (a stream's last event included) a moment before its line exists: tests wait
for the line instead of reading the captured list at once.
"""

from __future__ import annotations

import time
from collections.abc import MutableMapping, Sequence
from typing import Any

__all__ = ["access_lines"]


def access_lines(
    logs: Sequence[MutableMapping[str, Any]], path: str, *, count: int = 1, timeout: float = 10.0
) -> list[MutableMapping[str, Any]]:
    """The access lines of requests to `path`, once there are `count` of them."""
    deadline = time.monotonic() + timeout
    while True:
        lines = [e for e in list(logs) if e.get("event") == "request" and e.get("path") == path]
        if len(lines) >= count or time.monotonic() > deadline:
            return lines
        time.sleep(0.01)
