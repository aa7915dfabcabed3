"""The vendored encodings are byte-for-byte tiktoken's, and load without a network."""

import gzip
import hashlib
from importlib import resources

import pytest
import tiktoken
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from oneflow_ai.billing import encoding as encoding_module
from oneflow_ai.billing.encoding import (
    ENCODING_NAMES,
    EncodingIntegrityError,
    get_encoding,
)

EXPECTED_SHA256 = {  # tiktoken 0.14.0, tiktoken_ext/openai_public.py, expected_hash
    "cl100k_base": "223921b76ee99bde995b7ff738513eef100fb51d18c93597a113bcffe865b2a7",
    "o200k_base": "446a9538cb6c348e3516120d7c08b09f57c36495e2acfffe59a5bf8b0cfb1a2d",
}


@pytest.mark.parametrize("name", ENCODING_NAMES)
def test_vendored_file_matches_tiktokens_expected_hash(name: str) -> None:
    data = resources.files("oneflow_ai.billing").joinpath("encodings", f"{name}.tiktoken.gz")
    assert hashlib.sha256(gzip.decompress(data.read_bytes())).hexdigest() == EXPECTED_SHA256[name]


@pytest.mark.parametrize("name", ENCODING_NAMES)
def test_encoding_is_identical_to_tiktokens(
    name: str, reference_encodings: dict[str, tiktoken.Encoding]
) -> None:
    ours, ref = get_encoding(name), reference_encodings[name]
    assert ours is not ref
    assert ours.name == ref.name
    assert ours.n_vocab == ref.n_vocab
    assert ours._pat_str == ref._pat_str
    assert ours._special_tokens == ref._special_tokens
    # Ours keeps the ranks in the compiled encoder only (see oneflow_ai.billing.encoding):
    # every token of tiktoken's table has the same rank there, both ways.
    for token, rank in ref._mergeable_ranks.items():
        assert ours.decode_single_token_bytes(rank) == token
        assert ours.encode_single_token(token) == rank


@pytest.mark.parametrize("name", ENCODING_NAMES)
def test_token_ids_equal_tiktokens_on_the_corpus(
    name: str, corpus: list[str], reference_encodings: dict[str, tiktoken.Encoding]
) -> None:
    assert len(corpus) >= 200
    ours, ref = get_encoding(name), reference_encodings[name]
    for index, text in enumerate(corpus):
        tokens = ours.encode_ordinary(text)
        assert tokens == ref.encode_ordinary(text), f"corpus[{index}]: {text[:60]!r}"
        assert tokens == ref.encode(text, disallowed_special=()), f"corpus[{index}]"
        assert ours.encode(text, allowed_special="all") == ref.encode(text, allowed_special="all")
        assert ours.decode(tokens) == text


@pytest.mark.property
@settings(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(text=st.text(max_size=400))
def test_token_ids_equal_tiktokens_on_any_text(
    text: str, reference_encodings: dict[str, tiktoken.Encoding]
) -> None:
    for name in ENCODING_NAMES:
        assert get_encoding(name).encode_ordinary(text) == reference_encodings[
            name
        ].encode_ordinary(text)


@pytest.mark.property
@settings(
    max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    words=st.lists(
        st.sampled_from(
            ["def", " x", "\n", "  ", "привет", "你好", "🙂", "'s", "123", "<|endoftext|>"]
        ),
        max_size=80,
    )
)
def test_token_ids_equal_tiktokens_on_word_soups(
    words: list[str], reference_encodings: dict[str, tiktoken.Encoding]
) -> None:
    text = "".join(words)
    for name in ENCODING_NAMES:
        assert get_encoding(name).encode_ordinary(text) == reference_encodings[
            name
        ].encode_ordinary(text)


def test_encodings_are_cached_per_process() -> None:
    assert get_encoding("cl100k_base") is get_encoding("cl100k_base")


def test_unknown_encoding() -> None:
    with pytest.raises(ValueError, match="unknown encoding 'p50k_base'"):
        get_encoding("p50k_base")  # type: ignore[arg-type]


def test_a_tampered_rank_file_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    spec = encoding_module._SPECS["cl100k_base"]
    monkeypatch.setitem(
        encoding_module._SPECS,
        "cl100k_base",
        encoding_module._Spec(spec.file, "0" * 64, spec.pat_str, spec.special_tokens),
    )
    monkeypatch.setattr(encoding_module, "_cache", {})
    with pytest.raises(EncodingIntegrityError, match="expected 0000"):
        get_encoding("cl100k_base")


def test_loading_never_touches_the_network(monkeypatch: pytest.MonkeyPatch) -> None:
    import socket

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("network used")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(encoding_module, "_cache", {})
    monkeypatch.delenv("TIKTOKEN_CACHE_DIR", raising=False)
    assert get_encoding("o200k_base").encode("offline") == get_encoding("o200k_base").encode(
        "offline"
    )
