from __future__ import annotations

import pytest

from oneflow_ai.auth.credentials import credential_from_headers, secrets_equal


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ([(b"authorization", b"Bearer sk-abc")], "sk-abc"),
        ([(b"authorization", b"bearer   sk-abc  ")], "sk-abc"),
        ([(b"x-api-key", b"sk-ant")], "sk-ant"),
        ([(b"x-api-key", b"k1"), (b"authorization", b"Bearer k2")], "k2"),
        ([(b"authorization", b"Basic dXNlcjpwdw==")], None),
        ([(b"authorization", b"Bearer ")], None),
        ([(b"x-api-key", b"  ")], None),
        ([], None),
    ],
)
def test_credential_sources(headers: list[tuple[bytes, bytes]], expected: str | None) -> None:
    assert credential_from_headers(headers) == expected


def test_secrets_equal() -> None:
    assert secrets_equal("sk-one", "sk-one")
    assert not secrets_equal("sk-one", "sk-two")
    assert not secrets_equal("sk-on", "sk-one")
