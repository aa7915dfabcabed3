"""Password hashing with argon2id (RFC 9106), off the event loop.

A hash costs tens of milliseconds and 64 MiB on purpose, so it runs in a worker thread. Checking
an unknown account still verifies against a dummy hash, so response time does not reveal which
emails exist.
"""

from __future__ import annotations

import asyncio

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

__all__ = ["PasswordHashing"]

MIN_PASSWORD_LENGTH = 8


class PasswordHashing:
    def __init__(self, hasher: PasswordHasher | None = None) -> None:
        # argon2-cffi's defaults are RFC 9106's second recommendation: argon2id, t=3, m=64 MiB.
        self._hasher = hasher or PasswordHasher()
        self._dummy = self._hasher.hash("oneflow-dummy-password")

    async def hash(self, password: str) -> str:
        return await asyncio.to_thread(self._hasher.hash, password)

    async def verify(self, stored_hash: str | None, password: str) -> bool:
        """True when `password` matches; with no stored hash, spends the same time and fails."""
        return await asyncio.to_thread(self._verify, stored_hash, password)

    def _verify(self, stored_hash: str | None, password: str) -> bool:
        try:
            return self._hasher.verify(stored_hash or self._dummy, password) and bool(stored_hash)
        except (VerifyMismatchError, VerificationError, InvalidHashError):
            return False

    def needs_rehash(self, stored_hash: str) -> bool:
        return self._hasher.check_needs_rehash(stored_hash)
