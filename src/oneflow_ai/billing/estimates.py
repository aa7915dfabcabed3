"""Pre-flight estimates: what a request would cost on every eligible model.

Serves `POST /api/v1/estimate` and `oneflow estimate` alike. Input tokens are either given or
counted per model from a prompt or a message list (each model with its own tokenizer, so GPT-4o
and GPT-4 may differ); a prompt counts as one user message, as the gateway sends it. An
embedding's prompt is counted as plain text (one input); a transcription is priced by its
`seconds` of audio.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass

from oneflow_ai.billing.cost import Cost
from oneflow_ai.billing.errors import PricingError
from oneflow_ai.billing.pricing import PricingEngine
from oneflow_ai.billing.tokenizer import TokenCounter
from oneflow_ai.catalog import Modality, ModelEntry
from oneflow_ai.domain.usage import Usage

__all__ = ["DEFAULT_OUTPUT_TOKENS", "Estimator", "ModelEstimate"]

#: Output tokens assumed for a text estimate that names none.
DEFAULT_OUTPUT_TOKENS = 256


@dataclass(frozen=True, slots=True)
class ModelEstimate:
    model: str
    provider: str
    modality: Modality
    input_tokens: int
    output_tokens: int
    tokens_exact: bool
    fits: bool  # input + output fit the context window and the output limit
    cost: Cost
    images: int = 0
    characters: int = 0
    audio_seconds: int = 0


class Estimator:
    __slots__ = ("_counter", "_engine")

    def __init__(self, engine: PricingEngine, counter: TokenCounter | None = None) -> None:
        self._engine = engine
        self._counter = counter if counter is not None else TokenCounter(engine.catalog)

    @property
    def engine(self) -> PricingEngine:
        return self._engine

    @property
    def counter(self) -> TokenCounter:
        return self._counter

    def estimate(
        self,
        *,
        modality: Modality = "text",
        input_tokens: int | None = None,
        output_tokens: int | None = None,
        prompt: str | None = None,
        messages: Sequence[Mapping[str, object]] | None = None,
        images: int = 1,
        image_size: str | None = None,
        image_quality: str | None = None,
        characters: int | None = None,
        models: Collection[str] | None = None,
        seconds: int | None = None,
    ) -> tuple[ModelEstimate, ...]:
        """The request's cost on every eligible model of `modality` (or of `models`)."""
        entries = self._candidates(modality, models)
        out: list[ModelEstimate] = []
        for entry in entries:
            if modality == "text":
                out.append(self._text(entry, input_tokens, output_tokens, prompt, messages))
            elif modality == "image":
                usage = Usage(images=images, image_size=image_size, image_quality=image_quality)
                out.append(self._other(entry, usage, images=images))
            elif modality == "embedding":
                out.append(self._embedding(entry, input_tokens, prompt))
            elif modality == "transcription":
                if seconds is None:
                    raise PricingError("give the audio's seconds to estimate", param="seconds")
                usage = Usage(audio_seconds=seconds)
                out.append(self._other(entry, usage, audio_seconds=seconds))
            else:
                count = characters if characters is not None else len(prompt or "")
                out.append(self._other(entry, Usage(characters=count), characters=count))
        return tuple(out)

    def _candidates(self, modality: Modality, models: Collection[str] | None) -> list[ModelEntry]:
        eligible = self._engine.eligible_models(modality)
        if models is None:
            return list(eligible)
        wanted = {self._engine.catalog.get(name).id for name in models}
        return [entry for entry in eligible if entry.id in wanted]

    def _text(
        self,
        entry: ModelEntry,
        input_tokens: int | None,
        output_tokens: int | None,
        prompt: str | None,
        messages: Sequence[Mapping[str, object]] | None,
    ) -> ModelEstimate:
        exact = True
        if input_tokens is None:
            if messages is None and prompt is None:
                raise PricingError(
                    "give input_tokens, a prompt or messages to estimate", param="input_tokens"
                )
            chat = messages if messages is not None else [{"role": "user", "content": prompt}]
            counted = self._counter.count_messages(entry.id, chat)
            input_tokens, exact = counted.tokens, counted.exact
        output = DEFAULT_OUTPUT_TOKENS if output_tokens is None else output_tokens
        fits = (entry.context_window is None or input_tokens + output <= entry.context_window) and (
            entry.max_output_tokens is None or output <= entry.max_output_tokens
        )
        cost = self._engine.estimate(entry.id, input_tokens, output)
        return ModelEstimate(
            model=entry.id,
            provider=entry.provider,
            modality="text",
            input_tokens=input_tokens,
            output_tokens=output,
            tokens_exact=exact,
            fits=fits,
            cost=cost,
        )

    def _embedding(
        self, entry: ModelEntry, input_tokens: int | None, prompt: str | None
    ) -> ModelEstimate:
        exact = True
        if input_tokens is None:
            if prompt is None:
                raise PricingError(
                    "give input_tokens or a prompt to estimate", param="input_tokens"
                )
            counted = self._counter.count_text(entry.id, prompt)
            input_tokens, exact = counted.tokens, counted.exact
        return ModelEstimate(
            model=entry.id,
            provider=entry.provider,
            modality="embedding",
            input_tokens=input_tokens,
            output_tokens=0,
            tokens_exact=exact,
            fits=entry.context_window is None or input_tokens <= entry.context_window,
            cost=self._engine.price(entry.id, Usage(input_tokens=input_tokens, estimated=True)),
        )

    def _other(
        self,
        entry: ModelEntry,
        usage: Usage,
        *,
        images: int = 0,
        characters: int = 0,
        audio_seconds: int = 0,
    ) -> ModelEstimate:
        return ModelEstimate(
            model=entry.id,
            provider=entry.provider,
            modality=entry.modality,
            input_tokens=0,
            output_tokens=0,
            tokens_exact=True,
            fits=True,
            cost=self._engine.price(entry.id, usage),
            images=images,
            characters=characters,
            audio_seconds=audio_seconds,
        )
