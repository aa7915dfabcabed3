"""Where a caller's credential comes from: `Authorization: Bearer`, `X-API-Key`, `x-api-key`.

The official OpenAI SDK sends `Authorization: Bearer`; the current Anthropic SDK does too, and
older Anthropic clients send `x-api-key`. HTTP header names are case-insensitive, so one lookup
serves `X-API-Key` and `x-api-key`.
"""

from __future__ import annotations

import hmac
from collections.abc import Iterable

__all__ = ["credential_from_headers", "secrets_equal"]

_BEARER = b"bearer "


def credential_from_headers(headers: Iterable[tuple[bytes, bytes]]) -> str | None:
    """The credential in raw ASGI headers (lower-case names), or None."""
    api_key: bytes | None = None
    for name, value in headers:
        if name == b"authorization":
            if value[:7].lower() == _BEARER:
                token = value[7:].strip()
                if token:
                    return token.decode("latin-1")
        elif name == b"x-api-key" and value.strip():
            api_key = value.strip()
    return api_key.decode("latin-1") if api_key is not None else None


def secrets_equal(given: str, expected: str) -> bool:
    """Constant-time comparison of two secrets."""
    return hmac.compare_digest(given.encode(), expected.encode())
