"""A stream's output count: its bound (`running_at_most`, from the pieces' UTF-8 lengths) is
never below the count a check would get by tokenizing, whichever model's tokenizer counts and
whatever the text, and asking for it tokenizes nothing."""

from __future__ import annotations

import pytest

from oneflow_ai.billing.tokenizer import TokenCounter
from oneflow_ai.catalog import packaged_catalog
from oneflow_ai.domain.chat import StreamEvent, TextDelta, ThinkingDelta, ToolCallDelta
from oneflow_ai.gateway.estimate import CharacterEstimator, TokenizerEstimator
from oneflow_ai.gateway.stream_output import StreamOutput

TEXTS = [
    "Hello, world",
    "a",
    " ",
    "",
    "0123456789" * 7,
    "naïve café — “quotes”",
    "日本語のテキストです",
    "🙂🚀👩‍👩‍👧",
    "\u0000\u0001",
    "𝔘𝔫𝔦𝔠𝔬𝔡𝔢 and ascii",
    " ".join(["tokenization"] * 40),
]


@pytest.mark.parametrize("model", ["gpt-4o", "gpt-4", "claude-3-haiku-20240307"])
@pytest.mark.parametrize("text", TEXTS)
def test_the_bound_of_a_text_is_never_below_its_count(model: str, text: str) -> None:
    estimator = TokenizerEstimator(TokenCounter())
    entry = packaged_catalog().get(model)
    at_most = estimator.text_tokens_at_most(len(text.encode()), entry)
    assert estimator.text_tokens(text, entry) <= at_most
    assert CharacterEstimator().text_tokens(text, entry) <= len(text.encode())


@pytest.mark.parametrize("model", ["gpt-4o", "claude-3-haiku-20240307"])
def test_the_bound_of_the_running_count_holds_and_tokenizes_nothing(model: str) -> None:
    estimator = TokenizerEstimator(TokenCounter())
    entry = packaged_catalog().get(model)
    counted: list[str] = []

    def count(text: str) -> int:
        counted.append(text)
        return estimator.text_tokens(text, entry)

    output = StreamOutput(count, lambda size: estimator.text_tokens_at_most(size, entry))
    batches: list[list[StreamEvent]] = [[TextDelta(text)] for text in TEXTS]
    batches.append([ThinkingDelta("hmm"), ToolCallDelta(0, '{"a": 1}', "call-1", "lookup")])
    for batch in batches:
        output.add_batch(batch)
        bound = output.running_at_most()
        assert counted == []  # the bound tokenizes nothing
        assert output.running() <= bound
        assert output.running_at_most() == output.running()  # counted: the bound is the count
        counted.clear()
    # A batch taken back takes its bound with it.
    output.add_batch([TextDelta("extra words " * 20)])
    before = output.running_at_most()
    output.take_back()
    assert output.running_at_most() <= before
    assert output.running() <= output.running_at_most()


def test_a_batch_taken_back_before_it_was_counted_leaves_the_bound_as_it_was() -> None:
    output = StreamOutput(lambda text: len(text), lambda size: size)
    output.add_batch([TextDelta("abcd")])
    output.add_batch([TextDelta("efgh")])
    assert output.running_at_most() == 8
    output.take_back()
    assert output.running_at_most() == 4
    assert output.tokens() == 4 and output.running_at_most() == 4
