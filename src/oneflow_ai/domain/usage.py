"""What one request consumed: tokens, images, characters, seconds of audio."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["Usage"]


@dataclass(frozen=True, slots=True)
class Usage:
    """Provider-neutral usage of one request.

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

    def __post_init__(self) -> None:
        for name in ("input_tokens", "output_tokens", "images", "characters", "audio_seconds"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int):
                raise TypeError(f"Usage.{name} must be int, not {type(value).__name__}")
            if value < 0:
                raise ValueError(f"Usage.{name} must be >= 0, got {value}")

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
        )
