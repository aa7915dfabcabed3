"""The API key format, its keyed hash, and the in-process cache in front of the database."""

from __future__ import annotations

import hashlib
import hmac
import re
from datetime import UTC, datetime, timedelta

import pytest

from oneflow_ai.auth.api_keys import KeyHasher, generate_key, parse_key
from oneflow_ai.auth.key_cache import MISSING, KeyCache, KeyRecord
from oneflow_ai.auth.principal import Principal, PrincipalKind, Role
from oneflow_ai.observability.logging import Redactor
from tests.support.clock import FakeClock


def test_generated_keys_parse_back_and_are_unique() -> None:
    keys = [generate_key() for _ in range(200)]
    assert len({k.key for k in keys}) == 200
    for key in keys:
        assert re.fullmatch(r"sk-of-[0-9a-f]{12}-[A-Za-z0-9_\-]{43}", key.key)
        assert parse_key(key.key) == (key.prefix, key.secret)


@pytest.mark.parametrize(
    "text",
    [
        "sk-oneflow-dev-master-key",
        "sk-of-",
        "sk-of-abc-secret",  # prefix too short
        "sk-of-0123456789ab",  # no secret
        "sk-of-0123456789AB-secret",  # upper-case prefix
        "sk-of-0123456789zz-secret",
        "sk-of-0123456789ab-" + "x" * 200,
        "eyJhbGciOi.x.y",
    ],
)
def test_malformed_keys_do_not_parse(text: str) -> None:
    assert parse_key(text) is None


def test_keys_are_scrubbed_by_log_redaction() -> None:
    key = generate_key().key
    assert key not in Redactor().text(f"calling with {key} now")


def test_keyed_hash() -> None:
    hasher = KeyHasher(b"p" * 32)
    digest = hasher.hash("secret")
    assert len(digest) == 64 and digest != "secret"
    assert hasher.matches("secret", digest)
    assert not hasher.matches("secreT", digest)
    # Another pepper gives another hash: a stolen table is useless without the pepper.
    assert KeyHasher(b"q" * 32).hash("secret") != digest
    # Without a configured pepper one is derived from the master key, deterministically.
    derived = KeyHasher.from_secrets(None, "master-key-1234567890")
    assert derived.hash("s") == KeyHasher.from_secrets(None, "master-key-1234567890").hash("s")
    assert derived.hash("s") != KeyHasher.from_secrets(None, "another-master-key-123").hash("s")
    with pytest.raises(ValueError):
        KeyHasher(b"short")


def test_keyed_hash_is_hmac_sha256_of_the_pepper() -> None:
    """The stored hashes stay valid: each hash is HMAC-SHA256(pepper, secret), however many
    secrets one hasher has hashed before."""
    hasher = KeyHasher(b"p" * 32)
    for secret in ("secret", "another-secret", "secret"):
        expected = hmac.new(b"p" * 32, secret.encode(), hashlib.sha256).hexdigest()
        assert hasher.hash(secret) == expected


def _record(prefix: str, project: str = "proj_a") -> KeyRecord:
    principal = Principal(kind=PrincipalKind.API_KEY, project_id=project, role=Role.MEMBER)
    return KeyRecord(f"key_{prefix}", prefix, "h", None, None, None, principal)


def test_cache_entries_expire_after_their_ttl() -> None:
    clock = FakeClock()
    cache = KeyCache(ttl=5, max_size=100, monotonic=clock.monotonic)
    assert cache.get("aaa") is MISSING
    cache.put("aaa", _record("aaa"), cache.generation)
    clock.advance(4.9)
    assert isinstance(cache.get("aaa"), KeyRecord)
    clock.advance(0.2)
    assert cache.get("aaa") is MISSING


def test_unknown_prefixes_are_cached_briefly_and_apart() -> None:
    clock = FakeClock()
    cache = KeyCache(ttl=5, max_size=64, negative_ttl=1, monotonic=clock.monotonic)
    cache.put("real", _record("real"), cache.generation)
    for i in range(1000):  # a flood of random prefixes cannot evict the real key
        cache.put(f"junk{i}", None, cache.generation)
    assert isinstance(cache.get("real"), KeyRecord)
    assert cache.get("junk999") is None  # cached as unknown
    assert cache.get("junk0") is MISSING  # evicted from the bounded negative LRU
    clock.advance(1.1)
    assert cache.get("junk999") is MISSING  # negative entries live shorter


def test_cache_is_bounded_lru() -> None:
    cache = KeyCache(ttl=60, max_size=16)
    for i in range(20):
        cache.put(f"k{i}", _record(f"k{i}"), cache.generation)
    assert cache.get("k0") is MISSING
    assert isinstance(cache.get("k19"), KeyRecord)
    assert len(cache) == 16


def test_invalidation_wins_over_a_racing_load() -> None:
    cache = KeyCache(ttl=60, max_size=16)
    generation = cache.generation  # a load starts ...
    cache.invalidate("k")  # ... a revocation arrives while it reads the database ...
    cache.put("k", _record("k"), generation)  # ... so what it read is not kept
    assert cache.get("k") is MISSING


def test_project_invalidation_drops_that_projects_keys_only() -> None:
    cache = KeyCache(ttl=60, max_size=16)
    cache.put("a", _record("a", "proj_a"), cache.generation)
    cache.put("b", _record("b", "proj_b"), cache.generation)
    cache.invalidate_project("proj_a")
    assert cache.get("a") is MISSING
    assert isinstance(cache.get("b"), KeyRecord)


def test_record_usability_follows_the_clock() -> None:
    now = datetime(2026, 1, 1, tzinfo=UTC)
    later = now + timedelta(hours=1)
    base = _record("x")
    assert base.usable_at(now) is None
    rotating = KeyRecord("k", "x", "h", None, None, later, base.principal)
    assert rotating.usable_at(now) is None
    assert rotating.usable_at(later) == "rotated"
    assert KeyRecord("k", "x", "h", later, None, None, base.principal).usable_at(later) == "expired"
    assert KeyRecord("k", "x", "h", None, now, None, base.principal).usable_at(now) == "revoked"
