"""What a call to an unreachable Redis raises, for code that catches it with or without Redis.

redis-py is imported only when ``REDIS_URL`` is set (`gateway/wiring.py`: it costs a worker
~8 MiB of memory). Until it is, no Redis error can be raised and only the socket errors remain
to catch; an ``except`` clause evaluates its tuple when an exception reaches it, so
``except unreachable():`` always sees the classes of the moment.
"""

from __future__ import annotations

import sys

__all__ = ["unreachable"]

_SOCKET_ERRORS: tuple[type[BaseException], ...] = (OSError, TimeoutError)


def unreachable() -> tuple[type[BaseException], ...]:
    """``RedisError`` (once redis-py is loaded), ``OSError`` and ``TimeoutError``."""
    exceptions = sys.modules.get("redis.exceptions")
    if exceptions is None:
        return _SOCKET_ERRORS
    redis_error: type[BaseException] = exceptions.RedisError
    return (redis_error, *_SOCKET_ERRORS)
