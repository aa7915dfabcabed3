"""JWT access and refresh tokens, following RFC 8725 (JSON Web Token Best Current Practices).

- One algorithm, pinned: HS256. The header's `alg` must say so; `none` and every other value are
  refused before any key is chosen, so no token picks its own verification method.
- Explicit types (RFC 8725 §3.11): access tokens are `typ: at+jwt` (RFC 9068), refresh tokens
  `typ: rt+jwt`; one can never be used as the other.
- `iss`, `aud`, `sub`, `iat`, `exp` and `jti` are required and checked; time is read from an
  injectable clock with a small leeway.
- A self-service session of an API key is an access token with `scp: self`, the key's id as
  `sub` and its prefix as `kpf`: the resolver checks the key is still usable on every request.
- Signing keys rotate by `kid`: tokens are signed with `JWT_SECRET`; secrets in
  `JWT_PREVIOUS_SECRETS` still verify the tokens they signed. A `kid` is a digest of its secret,
  so operators configure secrets only.

PyJWT (and the parts of `cryptography` it loads) is imported on the first token signed or
verified: a gateway serving API keys only never pays its ~10 MiB of resident memory.
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from oneflow_ai.auth.clock import Clock, system_clock
from oneflow_ai.errors import AuthenticationError

__all__ = [
    "ACCESS_TYPE",
    "ALGORITHM",
    "REFRESH_TYPE",
    "SELF_SCOPE",
    "AccessClaims",
    "RefreshClaims",
    "TokenCodec",
]

ALGORITHM = "HS256"
#: The ``scp`` claim of a self-service session's access token.
SELF_SCOPE = "self"
ACCESS_TYPE = "at+jwt"
REFRESH_TYPE = "rt+jwt"
_REQUIRED = ["iss", "aud", "sub", "iat", "exp", "jti"]


def key_id(secret: str) -> str:
    return hashlib.sha256(b"oneflow jwt kid\x00" + secret.encode()).hexdigest()[:16]


@dataclass(frozen=True, slots=True)
class AccessClaims:
    """``user_id`` is the token's subject: a user, or for a self-service session (``scope``
    ``"self"``) the API key's id, whose prefix ``key_prefix`` finds it again."""

    user_id: str
    project_id: str
    role: str
    token_id: str
    expires_at: int
    scope: str | None = None
    key_prefix: str | None = None


@dataclass(frozen=True, slots=True)
class RefreshClaims:
    user_id: str
    project_id: str
    token_id: str
    family_id: str
    expires_at: int


@dataclass(frozen=True, slots=True)
class IssuedToken:
    token: str
    token_id: str
    expires_in: int


class TokenCodec:
    def __init__(
        self,
        *,
        secret: str,
        previous_secrets: Sequence[str] = (),
        issuer: str,
        audience: str,
        access_ttl: int,
        refresh_ttl: int,
        clock: Clock = system_clock,
        leeway: int = 5,
        memo_size: int = 10_000,
    ) -> None:
        self._kid = key_id(secret)
        self._secret = secret
        self._keys = {key_id(s): s for s in previous_secrets if s}
        self._keys[self._kid] = secret
        self._issuer = issuer
        self._audience = audience
        self.access_ttl = access_ttl
        self.refresh_ttl = refresh_ttl
        self._clock = clock
        self._leeway = leeway
        self._memo_size = memo_size
        self._verified: dict[str, AccessClaims] = {}

    @property
    def current_kid(self) -> str:
        return self._kid

    # ---- issuing -------------------------------------------------------------------------

    def issue_access(self, *, user_id: str, project_id: str, role: str) -> IssuedToken:
        token_id = uuid.uuid4().hex
        token = self._sign(
            ACCESS_TYPE,
            user_id,
            self.access_ttl,
            {"jti": token_id, "pid": project_id, "role": role},
        )
        return IssuedToken(token, token_id, self.access_ttl)

    def issue_self_session(
        self, *, key_id: str, key_prefix: str, project_id: str, role: str
    ) -> IssuedToken:
        """An access token that reads one API key's own data (``scp: self``)."""
        token_id = uuid.uuid4().hex
        claims = {"jti": token_id, "pid": project_id, "role": role, "scp": SELF_SCOPE}
        token = self._sign(ACCESS_TYPE, key_id, self.access_ttl, {**claims, "kpf": key_prefix})
        return IssuedToken(token, token_id, self.access_ttl)

    def issue_refresh(
        self, *, user_id: str, project_id: str, token_id: str, family_id: str
    ) -> IssuedToken:
        token = self._sign(
            REFRESH_TYPE,
            user_id,
            self.refresh_ttl,
            {"jti": token_id, "pid": project_id, "fam": family_id},
        )
        return IssuedToken(token, token_id, self.refresh_ttl)

    def _sign(self, typ: str, subject: str, ttl: int, claims: dict[str, Any]) -> str:
        now = int(self._clock().timestamp())
        payload = {
            "iss": self._issuer,
            "aud": self._audience,
            "sub": subject,
            "iat": now,
            "exp": now + ttl,
            **claims,
        }
        import jwt

        return jwt.encode(
            payload, self._secret, algorithm=ALGORITHM, headers={"kid": self._kid, "typ": typ}
        )

    # ---- verifying -----------------------------------------------------------------------

    def decode_access(self, token: str) -> AccessClaims:
        """Verified claims of an access token. A token verified before is served from a bounded
        memo (signature checking costs ~100 µs with PyJWT; a client reuses its token for
        minutes); its expiry is still checked against the clock on every call."""
        cached = self._verified.get(token)
        if cached is not None:
            if cached.expires_at <= self._clock().timestamp() - self._leeway:
                del self._verified[token]
                raise AuthenticationError("Expired access token", code="token_expired")
            return cached
        claims = self._verify(token, ACCESS_TYPE)
        pid, role = claims.get("pid"), claims.get("role")
        if not isinstance(pid, str) or not isinstance(role, str):
            raise AuthenticationError("Invalid access token", code="invalid_token")
        scope, prefix = claims.get("scp"), claims.get("kpf")
        if scope is not None and (scope != SELF_SCOPE or not isinstance(prefix, str)):
            raise AuthenticationError("Invalid access token", code="invalid_token")
        access = AccessClaims(
            claims["sub"], pid, role, claims["jti"], int(claims["exp"]), scope, prefix
        )
        if len(self._verified) >= self._memo_size:
            self._verified.clear()
        self._verified[token] = access
        return access

    def decode_refresh(self, token: str) -> RefreshClaims:
        claims = self._verify(token, REFRESH_TYPE)
        pid, family = claims.get("pid"), claims.get("fam")
        if not isinstance(pid, str) or not isinstance(family, str):
            raise AuthenticationError("Invalid refresh token", code="invalid_token")
        return RefreshClaims(claims["sub"], pid, claims["jti"], family, int(claims["exp"]))

    def _verify(self, token: str, typ: str) -> dict[str, Any]:
        import jwt

        what = "access token" if typ == ACCESS_TYPE else "refresh token"
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError:
            raise AuthenticationError(f"Malformed {what}", code="invalid_token") from None
        if header.get("alg") != ALGORITHM:
            raise AuthenticationError(f"Invalid {what}: algorithm refused", code="invalid_token")
        if header.get("typ") != typ:
            raise AuthenticationError(f"Invalid {what}: wrong token type", code="invalid_token")
        secret = self._keys.get(str(header.get("kid")))
        if secret is None:
            raise AuthenticationError(f"Invalid {what}: unknown signing key", code="invalid_token")
        try:
            claims: dict[str, Any] = jwt.decode(
                token,
                secret,
                algorithms=[ALGORITHM],
                audience=self._audience,
                issuer=self._issuer,
                options={
                    "require": _REQUIRED,
                    # Time is checked below against the injectable clock.
                    "verify_exp": False,
                    "verify_iat": False,
                    "verify_nbf": False,
                },
            )
        except jwt.InvalidAudienceError:
            raise AuthenticationError(
                f"Invalid {what}: wrong audience", code="invalid_token"
            ) from None
        except jwt.InvalidIssuerError:
            raise AuthenticationError(
                f"Invalid {what}: wrong issuer", code="invalid_token"
            ) from None
        except jwt.InvalidSignatureError:
            raise AuthenticationError(
                f"Invalid {what}: bad signature", code="invalid_token"
            ) from None
        except jwt.PyJWTError:
            raise AuthenticationError(f"Invalid {what}", code="invalid_token") from None
        now = self._clock().timestamp()
        exp, iat = claims.get("exp"), claims.get("iat")
        if (
            not isinstance(exp, int)
            or not isinstance(iat, int)
            or not isinstance(claims["sub"], str)
        ):
            raise AuthenticationError(f"Invalid {what}", code="invalid_token")
        if exp <= now - self._leeway:
            raise AuthenticationError(f"Expired {what}", code="token_expired")
        if iat > now + self._leeway:
            raise AuthenticationError(f"Invalid {what}: issued in the future", code="invalid_token")
        if not isinstance(claims["jti"], str):
            raise AuthenticationError(f"Invalid {what}", code="invalid_token")
        return claims
