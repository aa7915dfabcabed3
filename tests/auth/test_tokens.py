"""JWT access and refresh tokens: RFC 8725's failure cases are all refused."""

from __future__ import annotations

import base64
import json

import jwt
import pytest

from oneflow_ai.auth.tokens import ACCESS_TYPE, REFRESH_TYPE, TokenCodec, key_id
from oneflow_ai.errors import AuthenticationError
from tests.support.clock import FakeClock

SECRET = "s" * 64
OLD_SECRET = "o" * 64


def codec(clock: FakeClock, secret: str = SECRET, previous: tuple[str, ...] = ()) -> TokenCodec:
    return TokenCodec(
        secret=secret,
        previous_secrets=previous,
        issuer="oneflow",
        audience="oneflow-api",
        access_ttl=900,
        refresh_ttl=86400,
        clock=clock,
    )


def _b64(data: dict[str, object]) -> str:
    raw = json.dumps(data, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def _claims(token: str) -> dict[str, object]:
    return jwt.decode(token, options={"verify_signature": False})


def _forge(header: dict[str, object], claims: dict[str, object], secret: str) -> str:
    return jwt.encode(claims, secret, algorithm="HS256", headers=header)


def test_access_token_round_trip() -> None:
    clock = FakeClock()
    tokens = codec(clock)
    issued = tokens.issue_access(user_id="usr_1", project_id="proj_a", role="member")
    claims = tokens.decode_access(issued.token)
    assert (claims.user_id, claims.project_id, claims.role) == ("usr_1", "proj_a", "member")
    header = jwt.get_unverified_header(issued.token)
    assert header == {"alg": "HS256", "kid": key_id(SECRET), "typ": ACCESS_TYPE}
    raw = _claims(issued.token)
    assert {"iss", "aud", "sub", "iat", "exp", "jti"} <= set(raw)
    assert raw["exp"] == raw["iat"] + 900


def test_expired_token_is_refused() -> None:
    clock = FakeClock()
    tokens = codec(clock)
    issued = tokens.issue_access(user_id="usr_1", project_id="p", role="member")
    clock.advance(899)
    tokens.decode_access(issued.token)  # still valid
    clock.advance(10)  # past exp + the 5 s leeway
    with pytest.raises(AuthenticationError) as caught:
        tokens.decode_access(issued.token)
    assert caught.value.code == "token_expired"


def test_token_from_the_future_is_refused() -> None:
    clock = FakeClock()
    issuer = FakeClock()
    issuer.advance(3600)
    token = codec(issuer).issue_access(user_id="u", project_id="p", role="member").token
    with pytest.raises(AuthenticationError, match="future"):
        codec(clock).decode_access(token)


def test_tampered_payload_is_refused() -> None:
    tokens = codec(FakeClock())
    token = tokens.issue_access(user_id="usr_1", project_id="p", role="viewer").token
    header, _payload, signature = token.split(".")
    claims = _claims(token)
    claims["role"] = "admin"  # privilege escalation attempt, signature kept
    forged = f"{header}.{_b64(claims)}.{signature}"
    with pytest.raises(AuthenticationError, match="bad signature"):
        tokens.decode_access(forged)


def test_tampered_signature_is_refused() -> None:
    tokens = codec(FakeClock())
    token = tokens.issue_access(user_id="usr_1", project_id="p", role="viewer").token
    flipped = token[:-2] + ("AA" if token[-2:] != "AA" else "BB")
    with pytest.raises(AuthenticationError):
        tokens.decode_access(flipped)


@pytest.mark.parametrize(("claim", "value"), [("aud", "another-api"), ("iss", "someone-else")])
def test_wrong_audience_or_issuer_is_refused(claim: str, value: str) -> None:
    clock = FakeClock()
    tokens = codec(clock)
    claims = _claims(tokens.issue_access(user_id="u", project_id="p", role="member").token)
    claims[claim] = value
    forged = _forge({"kid": key_id(SECRET), "typ": ACCESS_TYPE}, claims, SECRET)
    with pytest.raises(AuthenticationError, match=r"wrong audience|wrong issuer"):
        tokens.decode_access(forged)


def test_alg_none_is_refused() -> None:
    tokens = codec(FakeClock())
    claims = _claims(tokens.issue_access(user_id="u", project_id="p", role="admin").token)
    header = {"alg": "none", "typ": ACCESS_TYPE, "kid": key_id(SECRET)}
    unsigned = f"{_b64(header)}.{_b64(claims)}."
    with pytest.raises(AuthenticationError, match="algorithm refused"):
        tokens.decode_access(unsigned)


@pytest.mark.parametrize("alg", ["HS384", "HS512"])
def test_other_algorithms_are_refused_even_with_the_right_key(alg: str) -> None:
    tokens = codec(FakeClock())
    claims = _claims(tokens.issue_access(user_id="u", project_id="p", role="member").token)
    forged = jwt.encode(
        claims, SECRET, algorithm=alg, headers={"kid": key_id(SECRET), "typ": ACCESS_TYPE}
    )
    with pytest.raises(AuthenticationError, match="algorithm refused"):
        tokens.decode_access(forged)


def test_token_signed_with_a_wrong_key_is_refused() -> None:
    tokens = codec(FakeClock())
    claims = _claims(tokens.issue_access(user_id="u", project_id="p", role="admin").token)
    # Claims the current key id but is signed with the attacker's secret.
    forged = _forge({"kid": key_id(SECRET), "typ": ACCESS_TYPE}, claims, "attacker-secret-" * 3)
    with pytest.raises(AuthenticationError, match="bad signature"):
        tokens.decode_access(forged)
    # Or names a key the gateway does not have.
    unknown = _forge({"kid": "deadbeef", "typ": ACCESS_TYPE}, claims, "attacker-secret-" * 3)
    with pytest.raises(AuthenticationError, match="unknown signing key"):
        tokens.decode_access(unknown)


def test_signing_keys_rotate_by_kid() -> None:
    clock = FakeClock()
    old_token = codec(clock, secret=OLD_SECRET).issue_access(
        user_id="u", project_id="p", role="member"
    )
    rotated = codec(clock, secret=SECRET, previous=(OLD_SECRET,))
    assert rotated.decode_access(old_token.token).user_id == "u"  # the previous key verifies
    new_token = rotated.issue_access(user_id="u", project_id="p", role="member").token
    assert jwt.get_unverified_header(new_token)["kid"] == key_id(SECRET)  # new ones: current key
    retired = codec(clock, secret=SECRET)  # the old secret removed from configuration
    with pytest.raises(AuthenticationError, match="unknown signing key"):
        retired.decode_access(old_token.token)


def test_a_refresh_token_is_not_an_access_token_and_vice_versa() -> None:
    tokens = codec(FakeClock())
    refresh = tokens.issue_refresh(user_id="u", project_id="p", token_id="j1", family_id="f1")
    with pytest.raises(AuthenticationError, match="wrong token type"):
        tokens.decode_access(refresh.token)
    access = tokens.issue_access(user_id="u", project_id="p", role="member")
    with pytest.raises(AuthenticationError, match="wrong token type"):
        tokens.decode_refresh(access.token)
    claims = tokens.decode_refresh(refresh.token)
    assert (claims.token_id, claims.family_id) == ("j1", "f1")
    assert jwt.get_unverified_header(refresh.token)["typ"] == REFRESH_TYPE


@pytest.mark.parametrize("missing", ["exp", "iat", "aud", "iss", "sub", "jti"])
def test_required_claims(missing: str) -> None:
    tokens = codec(FakeClock())
    claims = _claims(tokens.issue_access(user_id="u", project_id="p", role="member").token)
    del claims[missing]
    forged = _forge({"kid": key_id(SECRET), "typ": ACCESS_TYPE}, claims, SECRET)
    with pytest.raises(AuthenticationError):
        tokens.decode_access(forged)


@pytest.mark.parametrize("garbage", ["", "eyJ.x.y", "not-a-token", "a.b.c"])
def test_malformed_tokens(garbage: str) -> None:
    with pytest.raises(AuthenticationError):
        codec(FakeClock()).decode_access(garbage)
