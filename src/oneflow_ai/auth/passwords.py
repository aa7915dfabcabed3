"""Password hashing with argon2id (RFC 9106), off the event loop.

Parameters follow OWASP's password storage recommendation for argon2id: 19 MiB of memory, two
passes, one lane (RFC 9106's 64 MiB / three passes / four lanes took ~0.7 s per hash on our
2-core machines, which would make sign-in a denial-of-service lever). A hash costs ~0.1 s of
CPU on purpose, so it runs in a worker thread. Checking an unknown account still verifies
against a dummy hash, so response time does not reveal which emails exist. Hashes made with
other parameters keep verifying and are upgraded at the next sign-in. argon2 is imported with
the first hash or check (a gateway that only serves API keys never loads it).
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from argon2 import PasswordHasher

__all__ = ["PasswordHashing"]

MIN_PASSWORD_LENGTH = 8


class PasswordHashing:
    def __init__(self, hasher: PasswordHasher | None = None) -> None:
        self._given = hasher
        self._dummy: str | None = None

    @property
    def _hasher(self) -> PasswordHasher:
        if self._given is None:
            from argon2 import PasswordHasher

            self._given = PasswordHasher(time_cost=2, memory_cost=19_456, parallelism=1)
        return self._given

    async def hash(self, password: str) -> str:
        return await asyncio.to_thread(self._hasher.hash, password)

    async def verify(self, stored_hash: str | None, password: str) -> bool:
        """True when `password` matches; with no stored hash, spends the same time and fails."""
        return await asyncio.to_thread(self._verify, stored_hash, password)

    def _verify(self, stored_hash: str | None, password: str) -> bool:
        from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

        if stored_hash is None and self._dummy is None:
            self._dummy = self._hasher.hash("oneflow-dummy-password")
        try:
            return self._hasher.verify(stored_hash or self._dummy or "", password) and bool(
                stored_hash
            )
        except (VerifyMismatchError, VerificationError, InvalidHashError):
            return False

    def needs_rehash(self, stored_hash: str) -> bool:
        return self._hasher.check_needs_rehash(stored_hash)
