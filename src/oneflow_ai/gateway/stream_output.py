"""`StreamOutput`: a stream's output as OneFlow counts it, one counter for the stream and its hooks.

A stream (`gateway/stream.py`) records the text of each batch of deltas here before its hooks
see the batch; what the caller has received (checkpoints, the charge of a stream without the
provider's usage) and the running count a hook checks against a limit (the ledger's
reservation, `gateway/ledger_hook.py`) are both read from it, so that each piece of text is
tokenized once, however often and by whom it is asked.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from oneflow_ai.domain.chat import StreamEvent, TextDelta, ThinkingDelta, ToolCallDelta

__all__ = ["StreamOutput"]


class StreamOutput:
    """The text pieces of a stream's output deltas and their token count, counted
    incrementally with ``count`` (the tokens of a text)."""

    def __init__(self, count: Callable[[str], int]) -> None:
        self._count = count
        self._pieces: list[str] = []
        self._upto = 0  # pieces counted in `_tokens`
        self._tokens = 0
        self._batch_from = 0  # the last batch recorded: its pieces from here on
        self._batch_tokens: int | None = None  # ... counted apart (None: not yet)

    def __len__(self) -> int:
        """The number of pieces recorded (a position to count up to)."""
        return len(self._pieces)

    def add_batch(self, batch: Iterable[StreamEvent]) -> None:
        """Record the output text of a batch that is about to be forwarded."""
        self._fold()
        self._batch_from = len(self._pieces)
        for event in batch:
            if isinstance(event, TextDelta | ThinkingDelta):  # thinking is billed as output
                self._pieces.append(event.text)
            elif isinstance(event, ToolCallDelta):
                self._pieces.append(event.arguments)
                if event.name:
                    self._pieces.append(event.name)

    def take_back(self) -> None:
        """The last batch recorded is not forwarded after all: it is no part of the output."""
        del self._pieces[self._batch_from :]
        self._batch_tokens = None

    def running(self) -> int:
        """The output tokens so far, the last batch recorded included (counted apart from
        what came before it, so that it can be taken back)."""
        if self._upto >= len(self._pieces):
            return self._tokens
        self._advance(self._batch_from)
        if self._batch_tokens is None:
            self._batch_tokens = self._count("".join(self._pieces[self._batch_from :]))
        return self._tokens + self._batch_tokens

    def tokens(self, upto: int | None = None) -> int:
        """The output tokens of the first ``upto`` pieces (None: all of them)."""
        end = len(self._pieces) if upto is None else upto
        if self._batch_tokens is not None and end >= len(self._pieces):
            self._advance(self._batch_from)
            self._fold()
        self._advance(end)
        return self._tokens

    def _advance(self, end: int) -> None:
        if end > self._upto:
            self._tokens += self._count("".join(self._pieces[self._upto : end]))
            self._upto = end

    def _fold(self) -> None:
        """The last batch, counted apart, joins what is counted."""
        if self._batch_tokens is not None and self._upto == self._batch_from:
            self._tokens += self._batch_tokens
            self._upto = len(self._pieces)
        self._batch_tokens = None
