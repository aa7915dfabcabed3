from __future__ import annotations

from oneflow_ai.auth.passwords import PasswordHashing


async def test_argon2id_hash_and_verify() -> None:
    passwords = PasswordHashing()
    stored = await passwords.hash("correct horse battery")
    assert stored.startswith("$argon2id$v=19$m=19456,t=2,p=1$")  # OWASP's argon2id parameters
    assert "correct horse" not in stored
    assert await passwords.verify(stored, "correct horse battery")
    assert not await passwords.verify(stored, "correct horse battery!")
    assert not await passwords.verify("not-a-hash", "x")
    assert not passwords.needs_rehash(stored)


async def test_an_unknown_account_never_verifies() -> None:
    passwords = PasswordHashing()
    assert not await passwords.verify(None, "oneflow-dummy-password")
    assert not await passwords.verify(None, "anything")


async def test_hashes_with_other_parameters_verify_and_ask_for_an_upgrade() -> None:
    from argon2 import PasswordHasher

    legacy = PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1).hash("pw-123456")
    passwords = PasswordHashing()
    assert await passwords.verify(legacy, "pw-123456")
    assert passwords.needs_rehash(legacy)
