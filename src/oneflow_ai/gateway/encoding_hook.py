"""Tokenizer encodings built off the event loop: a pipeline pre-hook ahead of those that count.

Each encoding is built on its first count in a process (about a second, 25-45 MiB; see
`billing/encoding.py`). The rate-limit and ledger hooks count a chat or embedding call's prompt
synchronously; this hook, placed before them, first builds in a thread the encodings of the
call's candidates that are not built yet, so that the first request needing one waits for it
but the other requests of the worker do not. Afterwards it costs a set lookup per call.
"""

from __future__ import annotations

from oneflow_ai.gateway.call import Call
from oneflow_ai.gateway.estimate import TokenizerEstimator
from oneflow_ai.gateway.hooks import Hook, ShortCircuit

__all__ = ["EncodingHook"]

#: The operations whose prompts are counted with a model's tokenizer.
_COUNTED = ("chat", "embedding")


class EncodingHook(Hook):
    name = "encodings"

    def __init__(self, estimator: TokenizerEstimator) -> None:
        self._estimator = estimator

    async def before(self, call: Call) -> ShortCircuit | None:
        if call.operation in _COUNTED and call.candidates:
            await self._estimator.prepare([route.entry for route in call.candidates])
        return None
