"""Prompt and answer bodies, stored only for projects that opt in, redacted, for a retention.

`BodyLogHook` looks up the caller's project policy (`storage/request_bodies.py`, cached for a
few seconds per process, so a change reaches every replica within that time and this one at
once). When the project stores bodies, the hook keeps the prompt (chat messages, an image
prompt, the text to speak) and the answer (the text, streamed or not; the count of images or
characters, never their bytes), redacts both, and hands them to a writer that inserts them in
batches off the request path. Redaction: credentials always (the log redactor: keys, tokens,
bearer values and every secret of the settings); e-mail addresses, card numbers and phone
numbers when the policy names them. Each text is cut at `MAX_TEXT_CHARS`.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Final

import structlog
from sqlalchemy.ext.asyncio import AsyncEngine

from oneflow_ai.domain.chat import ChatRequest, ChatResponse, StreamEvent, TextDelta
from oneflow_ai.domain.embeddings import EmbeddingRequest, EmbeddingResponse
from oneflow_ai.domain.media import ImageRequest, ImageResponse, SpeechResponse
from oneflow_ai.domain.transcription import TranscriptionRequest, TranscriptionResponse
from oneflow_ai.gateway.call import Call
from oneflow_ai.gateway.hooks import Hook, RunningStream, ShortCircuit, StreamWatcher
from oneflow_ai.observability.logging import Redactor
from oneflow_ai.storage.request_bodies import (
    BodyPolicy,
    BodyRow,
    get_policy,
    insert_bodies,
    purge_expired,
)
from oneflow_ai.storage.tables import utcnow

__all__ = ["MAX_TEXT_CHARS", "REDACTION_RULES", "BodyLogHook", "BodyRedactor"]

log = structlog.get_logger("oneflow.bodies")

MAX_TEXT_CHARS: Final = 32_768
#: Optional redaction rules a policy may name (credentials are always redacted).
REDACTION_RULES: Final = {
    "emails": (re.compile(r"[A-Za-z0-9._%+\-]+@[A-Za-z0-9.\-]+\.[A-Za-z]{2,}"), "[EMAIL]"),
    "card_numbers": (re.compile(r"\b(?:\d[ \-]?){12,18}\d\b"), "[CARD]"),
    "phone_numbers": (re.compile(r"\+?\d[\d ().\-]{6,}\d"), "[PHONE]"),
}
_STATE = "bodies"
_FLUSH_SECONDS = 0.2
_PURGE_EVERY_SECONDS = 600.0


class BodyRedactor:
    """Credentials (the log redactor), then the policy's optional rules, then the size cap."""

    def __init__(self, redactor: Redactor, rules: tuple[str, ...]) -> None:
        self._redactor = redactor
        self._rules = [REDACTION_RULES[name] for name in REDACTION_RULES if name in rules]

    def text(self, value: str) -> str:
        value = self._redactor.text(value)
        for pattern, replacement in self._rules:
            value = pattern.sub(replacement, value)
        if len(value) > MAX_TEXT_CHARS:
            return value[:MAX_TEXT_CHARS] + f"… [{len(value) - MAX_TEXT_CHARS} more characters]"
        return value


@dataclass(slots=True)
class _Capture:
    policy: BodyPolicy
    streamed: list[str] = field(default_factory=list)
    streamed_chars: int = 0

    def watch(self, batch: Sequence[StreamEvent]) -> None:
        """Keep the text of a stream's batch (up to the stored length)."""
        for event in batch:
            if isinstance(event, TextDelta) and self.streamed_chars <= MAX_TEXT_CHARS:
                self.streamed.append(event.text)
                self.streamed_chars += len(event.text)


class BodyLogHook(Hook):
    name = "bodies"

    def __init__(
        self,
        engine: AsyncEngine,
        redactor: Redactor,
        *,
        policy_ttl: float = 5.0,
        clock: Callable[[], datetime] = utcnow,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._engine = engine
        self._redactor = redactor
        self._ttl = policy_ttl
        self._clock = clock
        self._monotonic = monotonic
        self._policies: dict[str, tuple[float, BodyPolicy]] = {}
        self._pending: list[BodyRow] = []
        self._flushing: asyncio.Task[None] | None = None
        self._purged_at = 0.0

    # ---- policies --------------------------------------------------------------------------

    async def policy(self, project_id: str) -> BodyPolicy:
        now = self._monotonic()
        cached = self._policies.get(project_id)
        if cached is not None and cached[0] > now:
            return cached[1]
        try:
            async with self._engine.connect() as connection:
                policy = await get_policy(connection, project_id)
        except Exception as exc:  # unreadable: store nothing rather than fail the call
            log.warning("body_policy_unavailable", project_id=project_id, error=str(exc))
            policy = BodyPolicy()
        self._policies[project_id] = (now + self._ttl, policy)
        return policy

    def forget(self, project_id: str) -> None:
        """Read the project's policy again on its next call (it has just changed)."""
        self._policies.pop(project_id, None)

    # ---- the hook --------------------------------------------------------------------------

    async def before(self, call: Call) -> ShortCircuit | None:
        policy = await self.policy(call.principal.project_id)
        if policy.store_bodies:
            call.state[_STATE] = _Capture(policy)
        return None

    def stream_watcher(self, call: Call, progress: RunningStream) -> StreamWatcher | None:
        capture = call.state.get(_STATE)
        return capture.watch if isinstance(capture, _Capture) else None

    async def after(self, call: Call) -> None:
        capture = call.state.get(_STATE)
        if not isinstance(capture, _Capture):
            return
        redact = BodyRedactor(self._redactor, capture.policy.redact)
        now = self._clock()
        self._pending.append(
            BodyRow(
                request_id=call.request_id,
                project_id=call.principal.project_id,
                occurred_at=now,
                expires_at=now + timedelta(days=capture.policy.retention_days),
                request=_prompt(call, redact),
                response=_answer(call, capture, redact),
            )
        )
        if self._flushing is None or self._flushing.done():
            self._flushing = asyncio.create_task(self._flush_soon())

    # ---- writing ---------------------------------------------------------------------------

    async def _flush_soon(self) -> None:
        await asyncio.sleep(_FLUSH_SECONDS)
        await self.flush()

    async def flush(self) -> None:
        """Write what is pending (and purge expired bodies now and then)."""
        rows, self._pending = self._pending, []
        if not rows:
            return
        try:
            async with self._engine.begin() as connection:
                await insert_bodies(connection, rows)
                if self._monotonic() - self._purged_at > _PURGE_EVERY_SECONDS:
                    self._purged_at = self._monotonic()
                    await purge_expired(connection, now=self._clock())
        except Exception as exc:  # bodies are a convenience: never fail or hold up a call
            log.warning("bodies_not_stored", count=len(rows), error=str(exc))

    async def close(self) -> None:
        if self._flushing is not None:
            await asyncio.gather(self._flushing, return_exceptions=True)
        await self.flush()


def _prompt(call: Call, redact: BodyRedactor) -> dict[str, Any]:
    request = call.request
    if isinstance(request, ChatRequest):
        return {
            "model": request.model,
            "messages": [
                {"role": m.role, "content": redact.text(m.text)} for m in request.messages
            ],
        }
    if isinstance(request, ImageRequest):
        return {"model": request.model, "prompt": redact.text(request.prompt), "n": request.n}
    if isinstance(request, EmbeddingRequest):
        return {
            "model": request.model,
            "input": [
                redact.text(item) if isinstance(item, str) else f"<{len(item)} tokens>"
                for item in request.inputs
            ],
        }
    if isinstance(request, TranscriptionRequest):
        return {
            "model": request.model,
            "file": request.filename,
            "bytes": len(request.audio),
            "prompt": redact.text(request.prompt) if request.prompt is not None else None,
        }
    return {"model": request.model, "input": redact.text(request.input)}


def _answer(call: Call, capture: _Capture, redact: BodyRedactor) -> dict[str, Any] | None:
    answer = call.answer
    if isinstance(answer, ChatResponse):
        return {"text": redact.text(answer.text), "finish_reason": answer.finish_reason}
    if isinstance(answer, ImageResponse):
        return {"images": len(answer.images)}
    if isinstance(answer, SpeechResponse):
        return {"characters": answer.usage.characters, "content_type": answer.content_type}
    if isinstance(answer, EmbeddingResponse):
        dimensions = len(answer.vectors[0]) if answer.vectors else 0
        return {"vectors": len(answer.vectors), "dimensions": dimensions}
    if isinstance(answer, TranscriptionResponse):
        return {"text": redact.text(answer.text), "audio_seconds": answer.usage.audio_seconds}
    if capture.streamed:
        return {"text": redact.text("".join(capture.streamed))}
    return None
