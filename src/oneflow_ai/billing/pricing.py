"""PricingEngine: the cost of a request on a model, exactly, in USD and credits.

>>> engine = PricingEngine()
>>> cost = engine.calculate_cost("gpt-4", 1500, 500)
>>> cost.usd == Decimal("0.075"), cost.credits == Decimal("7.5")
(True, True)

Every amount is computed in ``Decimal`` without rounding; each line item (input tokens, output
tokens, images, characters) is then rounded once, half to even, to a whole micro-credit, and
the total is the sum of the rounded line items (see :mod:`oneflow_ai.domain.money`).
"""

from __future__ import annotations

from decimal import Decimal, localcontext
from typing import Final

from oneflow_ai.billing.cost import Cost, LineItem, LineKind
from oneflow_ai.billing.errors import PricingError, UnpricedModelError
from oneflow_ai.catalog import Catalog, Modality, ModelEntry, Pricing, packaged_catalog
from oneflow_ai.domain.money import EXACT, usd_to_micro_credits
from oneflow_ai.domain.usage import Usage

__all__ = ["PricingEngine"]

_PER_MTOK = 1_000_000
_PER_IMAGE = 1
_PER_1K_CHARACTERS = 1_000
_PER_MINUTE = 60  # audio_seconds, priced per minute
_ZERO = Decimal(0)


class PricingEngine:
    """Prices usage on catalog models.

    ``catalog`` defaults to the packaged catalog; pass ``load_catalog(path)`` to use an
    operator's prices. Unknown models raise :class:`~oneflow_ai.catalog.UnknownModelError`,
    models with no price that are not free raise :class:`UnpricedModelError`, and usage the
    model has no price for (images on a text model, an unknown image size) raises
    :class:`PricingError`.
    """

    __slots__ = ("_catalog",)

    def __init__(self, catalog: Catalog | None = None) -> None:
        self._catalog = catalog if catalog is not None else packaged_catalog()

    @property
    def catalog(self) -> Catalog:
        """The catalog whose prices this engine uses."""
        return self._catalog

    @property
    def price_table_version(self) -> str:
        """The version of the price table, recorded on every :class:`Cost`."""
        return self._catalog.price_table_version

    def price(self, model: str, usage: Usage) -> Cost:
        """The cost of ``usage`` on ``model`` (an id or alias).

        ``Cost.estimated`` follows ``usage.estimated``. Text models bill input and output
        tokens, image models bill images by size and quality (the model's defaults when the
        usage names none), audio models bill input characters, embedding models input tokens,
        transcription models seconds of audio.
        """
        entry = self._priced_entry(model)
        _check_usage_fits(entry, usage)
        if entry.free or entry.pricing is None:
            items = _free_items(entry, usage)
        else:
            items = _items(entry, entry.pricing, usage)
        return Cost(
            model=entry.id,
            line_items=items,
            price_table_version=self.price_table_version,
            estimated=usage.estimated,
        )

    def estimate(self, model: str, input_tokens: int, output_tokens: int = 0) -> Cost:
        """Pre-flight cost of a text request with the given token counts (``estimated``)."""
        return self.price(
            model, Usage(input_tokens=input_tokens, output_tokens=output_tokens, estimated=True)
        )

    def calculate_cost(self, model: str, input_tokens: int, output_tokens: int) -> Cost:
        """Same as :meth:`estimate`; the name the product description uses."""
        return self.estimate(model, input_tokens, output_tokens)

    def max_cost(
        self,
        model: str,
        input_tokens: int = 0,
        max_output_tokens: int | None = None,
        *,
        images: int = 0,
        image_size: str | None = None,
        image_quality: str | None = None,
        characters: int = 0,
        audio_seconds: int = 0,
        cache_writes: bool = False,
    ) -> Cost:
        """Worst-case cost of a request, for reserving credits before it runs.

        ``cache_writes``: the request may write its prompt to the provider's cache (an
        Anthropic body with ``cache_control``); the prompt is then counted at the dearest of
        the input and cache-write prices.

        Text: ``input_tokens`` plus ``max_output_tokens`` output tokens, capped at the model's
        ``max_output_tokens`` (which is also the default when ``None``). Images: ``images`` at
        the given size and quality, or at the most expensive matching row when either is not
        given. Audio: ``characters``. Embedding: ``input_tokens``. Transcription:
        ``audio_seconds``. Token counts are ignored for image, audio and transcription models
        (they do not bill prompts). The result is marked ``estimated``.
        """
        entry = self._priced_entry(model)
        output = entry.max_output_tokens or 0
        if max_output_tokens is not None:
            _check_count("max_output_tokens", max_output_tokens)
            output = min(max_output_tokens, output) if output else max_output_tokens
        text = entry.modality == "text"
        tokens_in = entry.modality in ("text", "embedding")
        usage = Usage(
            input_tokens=input_tokens if tokens_in else 0,
            output_tokens=output if text else 0,
            **(_dearest_input_class(entry, input_tokens) if text and cache_writes else {}),
            images=images,
            image_size=image_size,
            image_quality=image_quality,
            characters=characters,
            audio_seconds=audio_seconds,
            estimated=True,
        )
        if (
            entry.modality == "image"
            and entry.pricing is not None
            and (image_size is None or image_quality is None)
        ):
            return self._worst_image_cost(entry, entry.pricing, usage)
        return self.price(entry.id, usage)

    def eligible_models(self, modality: Modality) -> tuple[ModelEntry, ...]:
        """Enabled models of ``modality`` that billing can charge for (priced or free)."""
        return tuple(m for m in self._catalog.by_modality(modality) if m.is_priced)

    def price_all(self, usage: Usage, modality: Modality = "text") -> tuple[Cost, ...]:
        """The cost of ``usage`` on every eligible model of ``modality``, in catalog order."""
        return tuple(self.price(m.id, usage) for m in self.eligible_models(modality))

    def _priced_entry(self, model: str) -> ModelEntry:
        entry = self._catalog.get(model)
        if not entry.is_priced:
            raise UnpricedModelError(entry.id)
        return entry

    def _worst_image_cost(self, entry: ModelEntry, pricing: Pricing, usage: Usage) -> Cost:
        _check_usage_fits(entry, usage)
        rows = [
            row.usd
            for row in pricing.per_image
            if (usage.image_size is None or row.size in (None, usage.image_size))
            and (usage.image_quality is None or row.quality in (None, usage.image_quality))
        ]
        if not rows:
            raise PricingError(_no_image_price(entry, usage))
        return Cost(
            model=entry.id,
            line_items=(_line("image", usage.images, max(rows), _PER_IMAGE),),
            price_table_version=self.price_table_version,
            estimated=True,
        )


def _items(entry: ModelEntry, pricing: Pricing, usage: Usage) -> tuple[LineItem, ...]:
    if entry.modality == "text":
        return _token_items(usage, *_token_prices(pricing))
    if entry.modality == "image":
        row = pricing.image_price(usage.image_size, usage.image_quality)
        if row is None:
            raise PricingError(_no_image_price(entry, usage))
        return (_line("image", usage.images, row.usd, _PER_IMAGE),)
    if entry.modality == "embedding":
        return (_line("input", usage.input_tokens, _price(pricing.input_per_mtok), _PER_MTOK),)
    if entry.modality == "transcription":
        unit = _price(pricing.per_minute)
        return (_line("audio_seconds", usage.audio_seconds, unit, _PER_MINUTE),)
    unit = _price(pricing.per_1k_characters)
    return (_line("characters", usage.characters, unit, _PER_1K_CHARACTERS),)


def _token_prices(pricing: Pricing) -> tuple[Decimal, Decimal, Decimal, Decimal, Decimal]:
    """Input, cached input, 5-minute write, 1-hour write and output prices per 1M tokens (a
    class without a price of its own costs the input price)."""
    plain = _price(pricing.input_per_mtok)

    def of(value: Decimal | None) -> Decimal:
        return plain if value is None else value

    return (
        plain,
        of(pricing.cached_input_per_mtok),
        of(pricing.cache_write_5m_per_mtok),
        of(pricing.cache_write_1h_per_mtok),
        _price(pricing.output_per_mtok),
    )


def _token_items(
    usage: Usage,
    plain: Decimal,
    cached: Decimal,
    write_5m: Decimal,
    write_1h: Decimal,
    output: Decimal,
) -> tuple[LineItem, ...]:
    """One line per token class: each token billed once, in its class. ``input`` and
    ``output`` are always there; the other classes when the usage has such tokens."""
    lines = [_line("input", usage.uncached_input_tokens, plain, _PER_MTOK)]
    for kind, quantity, unit in (
        ("cached_input", usage.cached_input_tokens, cached),
        ("cache_write_5m", usage.cache_write_5m_tokens, write_5m),
        ("cache_write_1h", usage.cache_write_1h_tokens, write_1h),
    ):
        if quantity:
            lines.append(_line(kind, quantity, unit, _PER_MTOK))  # type: ignore[arg-type]
    lines.append(_line("output", usage.output_tokens - usage.reasoning_tokens, output, _PER_MTOK))
    if usage.reasoning_tokens:
        lines.append(_line("reasoning", usage.reasoning_tokens, output, _PER_MTOK))
    return tuple(lines)


def _free_items(entry: ModelEntry, usage: Usage) -> tuple[LineItem, ...]:
    if entry.modality == "text":
        return _token_items(usage, _ZERO, _ZERO, _ZERO, _ZERO, _ZERO)
    kinds: dict[Modality, tuple[tuple[LineKind, int, int], ...]] = {
        "image": (("image", usage.images, _PER_IMAGE),),
        "audio": (("characters", usage.characters, _PER_1K_CHARACTERS),),
        "embedding": (("input", usage.input_tokens, _PER_MTOK),),
        "transcription": (("audio_seconds", usage.audio_seconds, _PER_MINUTE),),
    }
    return tuple(_line(kind, quantity, _ZERO, per) for kind, quantity, per in kinds[entry.modality])


def _line(kind: LineKind, quantity: int, unit_usd: Decimal, per: int) -> LineItem:
    _check_count(kind, quantity)
    with localcontext(EXACT):
        exact = Decimal(quantity) * unit_usd / per
    return LineItem(
        kind=kind,
        quantity=quantity,
        unit_usd=unit_usd,
        per=per,
        exact_usd=exact,
        micro_credits=usd_to_micro_credits(exact),
    )


def _dearest_input_class(entry: ModelEntry, input_tokens: int) -> dict[str, int]:
    """The prompt as the dearest input class the model has (a worst case: a prompt written to
    the 1-hour cache costs twice the input price on Claude models)."""
    if entry.pricing is None or entry.free or not input_tokens:
        return {}
    plain, _, write_5m, write_1h, _ = _token_prices(entry.pricing)
    if max(plain, write_5m, write_1h) == plain:
        return {}
    if write_1h >= write_5m:
        return {"cache_write_1h_tokens": input_tokens}
    return {"cache_write_5m_tokens": input_tokens}


def _price(value: Decimal | None) -> Decimal:
    if value is None:  # the catalog schema makes this unreachable for a valid entry
        raise PricingError("catalog entry lacks a price for its modality")
    return value


def _check_count(name: str, value: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be int, not {type(value).__name__}")
    if value < 0:
        raise ValueError(f"{name} must be >= 0, got {value}")


_NOT_BILLED: Final[dict[Modality, tuple[str, ...]]] = {
    "text": ("images", "characters", "audio_seconds"),
    "image": ("input_tokens", "output_tokens", "characters", "audio_seconds"),
    "audio": ("input_tokens", "output_tokens", "images", "audio_seconds"),
    "embedding": ("output_tokens", "images", "characters", "audio_seconds"),
    "transcription": ("input_tokens", "output_tokens", "images", "characters"),
}


def _check_usage_fits(entry: ModelEntry, usage: Usage) -> None:
    for name in _NOT_BILLED[entry.modality]:
        if getattr(usage, name):
            raise PricingError(
                f"model {entry.id!r} is a {entry.modality} model and has no price for {name}"
            )


def _no_image_price(entry: ModelEntry, usage: Usage) -> str:
    return (
        f"model {entry.id!r} has no price for images of size {usage.image_size!r} "
        f"and quality {usage.image_quality!r}"
    )
