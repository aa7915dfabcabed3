"""`StreamOutput`: a stream's output as OneFlow counts it, one counter for the stream and its hooks.

A stream (`gateway/stream.py`) records the text of each batch of deltas here before its hooks
see the batch; what the caller has received (checkpoints, the charge of a stream without the
provider's usage) and the running count a hook checks against a limit (the ledger's
reservation, `gateway/ledger_hook.py`) are both read from it, so that each piece of text is
tokenized once, however often and by whom it is asked.

Tokenizing is also put off until a count is asked for: `running_at_most` bounds the running
count from the pieces' UTF-8 lengths (`TokenEstimator.text_tokens_at_most`), so a check
against a limit tokenizes only once that bound reaches it; pieces not yet counted are counted
together when a count is asked for.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from oneflow_ai.domain.chat import StreamEvent, TextDelta, ThinkingDelta, ToolCallDelta

__all__ = ["StreamOutput"]


class StreamOutput:
    """The text pieces of a stream's output deltas and their token count, counted
    incrementally with ``count`` (the tokens of a text); ``at_most`` bounds ``count`` of a
    text of so many UTF-8 bytes."""

    def __init__(self, count: Callable[[str], int], at_most: Callable[[int], int]) -> None:
        self._count = count
        self._at_most = at_most
        self._pieces: list[str] = []
        self._upto = 0  # pieces counted in `_tokens`
        self._tokens = 0
        self._pending = 0  # the bound of the pieces not counted in `_tokens`
        self._batch_from = 0  # the last batch recorded: its pieces from here on
        self._batch_tokens: int | None = None  # ... counted apart (None: not yet)
        self._batch_bound = 0  # ... and their bound

    def __len__(self) -> int:
        """The number of pieces recorded (a position to count up to)."""
        return len(self._pieces)

    def add_batch(self, batch: Iterable[StreamEvent]) -> int:
        """Record the output text of a batch that is about to be forwarded; the number of
        pieces recorded so far, this batch's included."""
        if self._batch_tokens is not None:
            self._fold()
        pieces = self._pieces
        self._batch_from = len(pieces)
        size = 0  # their UTF-8 length
        for event in batch:
            if isinstance(event, _TEXT):  # thinking is billed as output
                text = event.text
            elif isinstance(event, ToolCallDelta):
                text = event.arguments
                pieces.append(text)
                size += _utf8_length(text)
                text = event.name or ""
                if not text:
                    continue
            else:
                continue
            pieces.append(text)
            size += _utf8_length(text)
        # The pieces of a batch are counted together, or with whole batches around them.
        self._batch_bound = bound = self._at_most(size) if size else 0
        self._pending += bound
        return len(pieces)

    def take_back(self) -> None:
        """The last batch recorded is not forwarded after all: it is no part of the output."""
        del self._pieces[self._batch_from :]
        self._batch_tokens = None
        self._pending -= self._batch_bound
        self._batch_bound = 0

    def running_at_most(self) -> int:
        """At least `running()`, without tokenizing what is not counted yet."""
        if self._batch_tokens is not None:
            return self._tokens + self._batch_tokens
        return self._tokens + self._pending

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
            at_most = self._at_most
            self._pending = sum([at_most(_utf8_length(p)) for p in self._pieces[end:]])

    def _fold(self) -> None:
        """The last batch, counted apart, joins what is counted."""
        if self._batch_tokens is not None and self._upto == self._batch_from:
            self._tokens += self._batch_tokens
            self._upto = len(self._pieces)
            self._pending = 0
        self._batch_tokens = None


_TEXT = (TextDelta, ThinkingDelta)


def _utf8_length(text: str) -> int:
    """The UTF-8 length of `text`, without encoding an ASCII one."""
    return len(text) if text.isascii() else len(text.encode())
