"""What one request consumed: tokens (by class), images, characters, seconds of audio."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

__all__ = ["Usage"]

_COUNTS = (
    "input_tokens",
    "output_tokens",
    "images",
    "characters",
    "audio_seconds",
    "cached_input_tokens",
    "cache_write_5m_tokens",
    "cache_write_1h_tokens",
    "reasoning_tokens",
)


@dataclass(frozen=True, slots=True)
class Usage:
    """Provider-neutral usage of one request.

    ``input_tokens`` is the whole prompt and ``output_tokens`` the whole answer, whatever the
    provider's own convention (Anthropic reports cache reads and writes beside its
    ``input_tokens``; they are added in here). The token classes that providers bill apart are
    parts of those totals: ``cached_input_tokens`` (read from the provider's prompt cache:
    OpenAI ``cached_tokens``, Anthropic ``cache_read_input_tokens``),
    ``cache_write_5m_tokens`` / ``cache_write_1h_tokens`` (written to Anthropic's cache for 5
    minutes or an hour) within ``input_tokens``, and ``reasoning_tokens`` within
    ``output_tokens``. Pricing bills each token once, in its class (docs/billing.md).

    ``estimated`` is ``True`` when OneFlow counted the usage itself (a pre-flight estimate, or a
    stream cut off before the provider's usage event) rather than taking it from the provider's
    response. ``image_size`` (``"1024x1024"``) and ``image_quality`` (``"standard"``, ``"hd"``)
    select the per-image price; ``None`` means the model's default. ``audio_seconds`` is the
    length of transcribed audio in whole seconds (rounded up).
    """

    input_tokens: int = 0
    output_tokens: int = 0
    images: int = 0
    image_size: str | None = None
    image_quality: str | None = None
    characters: int = 0
    estimated: bool = False
    audio_seconds: int = 0
    cached_input_tokens: int = 0
    cache_write_5m_tokens: int = 0
    cache_write_1h_tokens: int = 0
    reasoning_tokens: int = 0

    def __post_init__(self) -> None:
        counts = (
            self.input_tokens,
            self.output_tokens,
            self.images,
            self.characters,
            self.audio_seconds,
            self.cached_input_tokens,
            self.cache_write_5m_tokens,
            self.cache_write_1h_tokens,
            self.reasoning_tokens,
        )
        for value in counts:
            if value.__class__ is not int or value < 0:
                self._refuse_counts()
        cached, write_5m, write_1h = counts[5:8]
        if cached + write_5m + write_1h > self.input_tokens:
            raise ValueError(
                "Usage: cached and cache-write tokens exceed input_tokens "
                f"({self.prompt_cache_tokens} > {self.input_tokens})"
            )
        if self.reasoning_tokens > self.output_tokens:
            raise ValueError(
                f"Usage: reasoning_tokens exceed output_tokens "
                f"({self.reasoning_tokens} > {self.output_tokens})"
            )

    def _refuse_counts(self) -> None:
        """Raise for the first count that is not a non-negative ``int`` (an ``int`` subclass
        other than ``bool`` is one)."""
        for name in _COUNTS:
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int):
                raise TypeError(f"Usage.{name} must be int, not {type(value).__name__}")
            if value < 0:
                raise ValueError(f"Usage.{name} must be >= 0, got {value}")

    @property
    def cache_write_tokens(self) -> int:
        """Input tokens written to the prompt cache (both lifetimes)."""
        return self.cache_write_5m_tokens + self.cache_write_1h_tokens

    @property
    def prompt_cache_tokens(self) -> int:
        """Input tokens read from or written to the prompt cache."""
        return self.cached_input_tokens + self.cache_write_tokens

    @property
    def uncached_input_tokens(self) -> int:
        """Input tokens billed at the plain input price."""
        return self.input_tokens - self.prompt_cache_tokens

    @classmethod
    def of_tokens(
        cls,
        input_tokens: int,
        output_tokens: int,
        *,
        cached_input_tokens: int = 0,
        cache_write_5m_tokens: int = 0,
        cache_write_1h_tokens: int = 0,
        reasoning_tokens: int = 0,
        estimated: bool = False,
    ) -> Usage:
        """A text usage from a provider's counts, each class cut to what its total can hold
        (a provider that reports more cached than prompt tokens is believed up to the
        prompt): never an error, so an odd report is billed rather than refused."""
        input_tokens, output_tokens = max(input_tokens, 0), max(output_tokens, 0)
        # Each class takes what is left of the prompt after the ones before it (written out:
        # every provider answer comes through here).
        cached = min(max(cached_input_tokens, 0), input_tokens)
        write_5m = min(max(cache_write_5m_tokens, 0), input_tokens - cached)
        write_1h = min(max(cache_write_1h_tokens, 0), input_tokens - cached - write_5m)
        return cls(
            input_tokens=input_tokens,
            output_tokens=output_tokens,
            cached_input_tokens=cached,
            cache_write_5m_tokens=write_5m,
            cache_write_1h_tokens=write_1h,
            reasoning_tokens=min(max(reasoning_tokens, 0), output_tokens),
            estimated=estimated,
        )

    @classmethod
    def of_classes(
        cls,
        input_tokens: int,
        output_tokens: int,
        classes: Mapping[str, int],
        *,
        estimated: bool = False,
    ) -> Usage:
        """:meth:`of_tokens` with the token classes by field name (missing ones are 0)."""
        return cls.of_tokens(
            input_tokens,
            output_tokens,
            cached_input_tokens=classes.get("cached_input_tokens", 0),
            cache_write_5m_tokens=classes.get("cache_write_5m_tokens", 0),
            cache_write_1h_tokens=classes.get("cache_write_1h_tokens", 0),
            reasoning_tokens=classes.get("reasoning_tokens", 0),
            estimated=estimated,
        )

    def __add__(self, other: Usage) -> Usage:
        """Combine two usages of the same request (e.g. parts of a stream).

        Image size and quality must agree when both sides have images; the sum is estimated
        if either side is.
        """
        if not isinstance(other, Usage):
            return NotImplemented
        if (
            self.images
            and other.images
            and ((self.image_size, self.image_quality) != (other.image_size, other.image_quality))
        ):
            raise ValueError("cannot add usages with different image size or quality")
        sized = self if self.images else other
        return Usage(
            input_tokens=self.input_tokens + other.input_tokens,
            output_tokens=self.output_tokens + other.output_tokens,
            images=self.images + other.images,
            image_size=sized.image_size,
            image_quality=sized.image_quality,
            characters=self.characters + other.characters,
            estimated=self.estimated or other.estimated,
            audio_seconds=self.audio_seconds + other.audio_seconds,
            cached_input_tokens=self.cached_input_tokens + other.cached_input_tokens,
            cache_write_5m_tokens=self.cache_write_5m_tokens + other.cache_write_5m_tokens,
            cache_write_1h_tokens=self.cache_write_1h_tokens + other.cache_write_1h_tokens,
            reasoning_tokens=self.reasoning_tokens + other.reasoning_tokens,
        )
