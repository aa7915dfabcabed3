"""The encodings a call counts with are built in a thread, once, before the hooks that count."""

from __future__ import annotations

import threading
from types import SimpleNamespace

from oneflow_ai.auth.principal import MASTER
from oneflow_ai.billing.tokenizer import TokenCounter
from oneflow_ai.catalog import TokenizerName, packaged_catalog
from oneflow_ai.domain.chat import ChatRequest, Message, TextPart
from oneflow_ai.gateway.call import Call
from oneflow_ai.gateway.encoding_hook import EncodingHook
from oneflow_ai.gateway.estimate import TokenizerEstimator


class _Counter(TokenCounter):
    """Records which encodings it is asked to build, and on which thread."""

    def __init__(self) -> None:
        super().__init__()
        self.built: list[tuple[TokenizerName, int]] = []

    def ready(self, tokenizer: TokenizerName) -> bool:
        return any(built == tokenizer for built, _ in self.built)

    def load(self, tokenizer: TokenizerName) -> None:
        self.built.append((tokenizer, threading.get_ident()))


def _call(*models: str) -> Call:
    request = ChatRequest(models[0], [Message("user", [TextPart("Hello there")])])
    call = Call("req-1", MASTER, "chat", request, models[0])
    catalog = packaged_catalog()
    call.candidates = [SimpleNamespace(entry=catalog.get(m)) for m in models]  # type: ignore[misc]
    return call


async def test_encodings_are_built_in_a_thread_once() -> None:
    counter = _Counter()
    hook = EncodingHook(TokenizerEstimator(counter))
    await hook.before(_call("gpt-4o", "gpt-4o-mini", "gpt-4"))
    assert sorted(name for name, _ in counter.built) == ["cl100k_base", "o200k_base"]
    assert all(thread != threading.get_ident() for _, thread in counter.built)
    await hook.before(_call("gpt-4o", "gpt-4"))
    assert len(counter.built) == 2


def test_the_counting_loads_an_encoding_only_when_first_asked() -> None:
    counter = TokenCounter()
    counter.load("claude_approx")  # Claude's estimate counts with cl100k_base
    assert counter.ready("claude_approx") and counter.ready("cl100k_base")


async def test_a_counter_prepares_each_encoding_once_in_a_thread() -> None:
    counter = _Counter()
    await counter.prepare(["claude_approx", None, "o200k_base", "o200k_base"])
    assert sorted(name for name, _ in counter.built) == ["claude_approx", "o200k_base"]
    assert all(thread != threading.get_ident() for _, thread in counter.built)
    await counter.prepare(["o200k_base"])
    assert len(counter.built) == 2
