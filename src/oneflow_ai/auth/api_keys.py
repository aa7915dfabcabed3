"""The API key format and its keyed hash.

A key reads `sk-of-<prefix>-<secret>`: `prefix` (12 hex characters) finds the stored row and is
safe to show; `secret` (32 random bytes, URL-safe base64) never leaves the response that created
it. Only HMAC-SHA256(pepper, secret) is stored: keys carry 256 bits of entropy, so a fast keyed
hash is as strong as a slow KDF here and costs about a microsecond per request. The `sk-` shape
lets log redaction scrub keys wherever they appear.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass

__all__ = ["KEY_PREFIX", "GeneratedKey", "KeyHasher", "generate_key", "parse_key"]

KEY_PREFIX = "sk-of-"
_PREFIX_HEX = 12
_HEX_DIGITS = frozenset("0123456789abcdef")  # lower-case only, as `generate_key` writes them
_PEPPER_LABEL = b"oneflow api-key pepper v1"


@dataclass(frozen=True, slots=True)
class GeneratedKey:
    key: str
    prefix: str
    secret: str


def generate_key() -> GeneratedKey:
    prefix = secrets.token_hex(_PREFIX_HEX // 2)
    secret = secrets.token_urlsafe(32)
    return GeneratedKey(key=f"{KEY_PREFIX}{prefix}-{secret}", prefix=prefix, secret=secret)


def parse_key(text: str) -> tuple[str, str] | None:
    """(prefix, secret) of a well-formed OneFlow key, else None."""
    if not text.startswith(KEY_PREFIX):
        return None
    prefix, sep, secret = text[len(KEY_PREFIX) :].partition("-")
    if not sep or len(prefix) != _PREFIX_HEX or not secret or len(secret) > 128:
        return None
    if not _HEX_DIGITS.issuperset(prefix):
        return None
    return prefix, secret


class KeyHasher:
    """HMAC-SHA256 with a server-side pepper; comparison in constant time."""

    def __init__(self, pepper: bytes) -> None:
        if len(pepper) < 16:
            raise ValueError("the API key pepper needs at least 16 bytes")
        # The pepper's key schedule, done once: each hash copies it (HMAC's state after the
        # key) instead of handing the pepper to OpenSSL, which sets up the key and looks the
        # digest up again on every one-shot call (about three times the cost).
        self._keyed = hmac.new(pepper, digestmod=hashlib.sha256)

    @classmethod
    def from_secrets(cls, pepper: str | None, master_key: str) -> KeyHasher:
        """The configured pepper, or one derived from the master key when none is set."""
        if pepper:
            return cls(pepper.encode())
        return cls(hmac.new(master_key.encode(), _PEPPER_LABEL, hashlib.sha256).digest())

    def hash(self, secret: str) -> str:
        mac = self._keyed.copy()
        mac.update(secret.encode())
        return mac.hexdigest()

    def matches(self, secret: str, stored_hash: str) -> bool:
        return hmac.compare_digest(self.hash(secret), stored_hash)
