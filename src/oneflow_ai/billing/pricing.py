"""PricingEngine: the cost of a request on a model, exactly, in USD and credits.

>>> engine = PricingEngine()
>>> cost = engine.calculate_cost("gpt-4", 1500, 500)
>>> cost.usd == Decimal("0.075"), cost.credits == Decimal("7.5")
(True, True)

Every amount is computed in ``Decimal`` without rounding; each line item (input tokens, output
tokens, images, characters) is then rounded once, half to even, to a whole micro-credit, and
the total is the sum of the rounded line items (see :mod:`oneflow_ai.domain.money`). The
micro-credits are computed in integers, from each model's prices as exact rates of
micro-credits per unit (:mod:`oneflow_ai.billing.rates`, derived once per model when the engine
is made): the same amounts, rounded by the same rule.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Final

from oneflow_ai.billing.cost import Cost, LineItem, LineKind
from oneflow_ai.billing.errors import PricingError, UnpricedModelError
from oneflow_ai.billing.rates import (
    FREE_TOKENS,
    PER_1K_CHARACTERS,
    PER_IMAGE,
    PER_MINUTE,
    PER_MTOK,
    TokenPrices,
    UnitPrice,
    model_prices,
)
from oneflow_ai.catalog import Catalog, Modality, ModelEntry, Pricing, packaged_catalog
from oneflow_ai.domain.money import EXACT
from oneflow_ai.domain.usage import Usage

__all__ = ["PricingEngine"]

#: The exact context of :mod:`oneflow_ai.domain.money`, kept for line items (its flags are
#: never read; an inexact amount raises as there).
_EXACT: Final = EXACT.copy()
_ZERO = Decimal(0)


class PricingEngine:
    """Prices usage on catalog models.

    ``catalog`` defaults to the packaged catalog; pass ``load_catalog(path)`` to use an
    operator's prices. Unknown models raise :class:`~oneflow_ai.catalog.UnknownModelError`,
    models with no price that are not free raise :class:`UnpricedModelError`, and usage the
    model has no price for (images on a text model, an unknown image size) raises
    :class:`PricingError`.
    """

    __slots__ = ("_catalog", "_output_lines", "_prices", "_token_prices", "_version")

    def __init__(self, catalog: Catalog | None = None) -> None:
        self._catalog = catalog if catalog is not None else packaged_catalog()
        self._version = self._catalog.price_table_version
        self._prices: dict[str, TokenPrices | UnitPrice | None] = {}
        #: The priced text models' token prices (their costs take the short way).
        self._token_prices: dict[str, TokenPrices] = {}
        #: Per text model, the output line of its last worst case (most requests of a model
        #: reserve the same output: its limit, or the same ``max_tokens``).
        self._output_lines: dict[str, LineItem] = {}
        for entry in self._catalog.models:
            if entry.pricing is not None and not entry.free:
                try:
                    prices = self._prices[entry.id] = model_prices(entry, entry.pricing)
                except PricingError:  # raised when the model is priced
                    continue
                if isinstance(prices, TokenPrices) and entry.modality == "text":
                    self._token_prices[entry.id] = prices

    @property
    def catalog(self) -> Catalog:
        """The catalog whose prices this engine uses."""
        return self._catalog

    @property
    def price_table_version(self) -> str:
        """The version of the price table, recorded on every :class:`Cost`."""
        return self._version

    def price(self, model: str, usage: Usage) -> Cost:
        """The cost of ``usage`` on ``model`` (an id or alias).

        ``Cost.estimated`` follows ``usage.estimated``. Text models bill input and output
        tokens, image models bill images by size and quality (the model's defaults when the
        usage names none), audio models bill input characters, embedding models input tokens,
        transcription models seconds of audio.
        """
        return self._price_entry(self._priced_entry(model), usage)

    def _price_entry(self, entry: ModelEntry, usage: Usage) -> Cost:
        prices = self._token_prices.get(entry.id)
        if prices is not None and not (usage.images or usage.characters or usage.audio_seconds):
            # A priced text model and a text usage (what `_check_usage_fits` lets through).
            return Cost(entry.id, _token_items(usage, prices), self._version, usage.estimated)
        _check_usage_fits(entry, usage)
        if entry.free or entry.pricing is None:
            items = _free_items(entry, usage)
        else:
            items = _items(entry, entry.pricing, self._model_prices(entry, entry.pricing), usage)
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
        prices = self._token_prices.get(entry.id)
        if (
            prices is not None
            and not (cache_writes or images or characters or audio_seconds)
            and image_size is None
            and image_quality is None
        ):
            return self._text_worst_case(entry, prices, input_tokens, output)
        text = entry.modality == "text"
        tokens_in = entry.modality in ("text", "embedding")
        usage = Usage(
            input_tokens=input_tokens if tokens_in else 0,
            output_tokens=output if text else 0,
            **(self._dearest_input_class(entry, input_tokens) if text and cache_writes else {}),
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
        return self._price_entry(entry, usage)

    def _text_worst_case(
        self, entry: ModelEntry, prices: TokenPrices, input_tokens: int, output: int
    ) -> Cost:
        """The worst case of a priced text model without cache writes: what pricing
        ``Usage(input_tokens, output, estimated=True)`` gives, with the output line of the
        model's previous worst case when it is the same."""
        if input_tokens.__class__ is not int or input_tokens < 0:
            _check_count("input_tokens", input_tokens)
        line = self._output_lines.get(entry.id)
        if line is None or line.quantity != output:
            line = self._output_lines[entry.id] = _line("output", output, prices.output)
        items = (_line("input", input_tokens, prices.plain), line)
        return Cost(entry.id, items, self._version, True)

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

    def _model_prices(self, entry: ModelEntry, pricing: Pricing) -> TokenPrices | UnitPrice | None:
        prices = self._prices.get(entry.id)
        return prices if prices is not None else model_prices(entry, pricing)

    def _dearest_input_class(self, entry: ModelEntry, input_tokens: int) -> dict[str, int]:
        """The prompt as the dearest input class the model has (a worst case)."""
        if entry.pricing is None or entry.free or not input_tokens:
            return {}
        prices = self._model_prices(entry, entry.pricing)
        dearest = prices.dearest_input_class() if isinstance(prices, TokenPrices) else None
        return {dearest: input_tokens} if dearest is not None else {}

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
            line_items=(_line("image", usage.images, UnitPrice.of(max(rows), PER_IMAGE)),),
            price_table_version=self.price_table_version,
            estimated=True,
        )


def _items(
    entry: ModelEntry, pricing: Pricing, prices: TokenPrices | UnitPrice | None, usage: Usage
) -> tuple[LineItem, ...]:
    if isinstance(prices, TokenPrices):
        return _token_items(usage, prices)
    if entry.modality == "image":
        row = pricing.image_price(usage.image_size, usage.image_quality)
        if row is None:
            raise PricingError(_no_image_price(entry, usage))
        return (_line("image", usage.images, UnitPrice.of(row.usd, PER_IMAGE)),)
    assert prices is not None  # every other modality has one price (rates.model_prices)
    return (_line(_UNIT_KIND[entry.modality], _quantity(entry.modality, usage), prices),)


def _token_items(usage: Usage, prices: TokenPrices) -> tuple[LineItem, ...]:
    """One line per token class: each token billed once, in its class. ``input`` and
    ``output`` are always there; the other classes when the usage has such tokens."""
    cached, write_5m, write_1h = (
        usage.cached_input_tokens,
        usage.cache_write_5m_tokens,
        usage.cache_write_1h_tokens,
    )
    reasoning = usage.reasoning_tokens
    if not (cached or write_5m or write_1h or reasoning):  # most answers: two lines
        return (
            _line("input", usage.input_tokens, prices.plain),
            _line("output", usage.output_tokens, prices.output),
        )
    lines = [_line("input", usage.input_tokens - cached - write_5m - write_1h, prices.plain)]
    if cached:
        lines.append(_line("cached_input", cached, prices.cached))
    if write_5m:
        lines.append(_line("cache_write_5m", write_5m, prices.write_5m))
    if write_1h:
        lines.append(_line("cache_write_1h", write_1h, prices.write_1h))
    lines.append(_line("output", usage.output_tokens - reasoning, prices.output))
    if reasoning:
        lines.append(_line("reasoning", reasoning, prices.output))
    return tuple(lines)


_UNIT_KIND: Final[dict[Modality, LineKind]] = {
    "image": "image",
    "audio": "characters",
    "embedding": "input",
    "transcription": "audio_seconds",
}
_FREE_UNITS: Final[dict[Modality, UnitPrice]] = {
    "image": UnitPrice(_ZERO, PER_IMAGE, 0),
    "audio": UnitPrice(_ZERO, PER_1K_CHARACTERS, 0),
    "embedding": UnitPrice(_ZERO, PER_MTOK, 0),
    "transcription": UnitPrice(_ZERO, PER_MINUTE, 0),
}


def _quantity(modality: Modality, usage: Usage) -> int:
    """What a model of ``modality`` other than text bills in ``usage``."""
    if modality == "image":
        return usage.images
    if modality == "audio":
        return usage.characters
    if modality == "embedding":
        return usage.input_tokens
    return usage.audio_seconds


def _free_items(entry: ModelEntry, usage: Usage) -> tuple[LineItem, ...]:
    modality = entry.modality
    if modality == "text":
        return _token_items(usage, FREE_TOKENS)
    return (_line(_UNIT_KIND[modality], _quantity(modality, usage), _FREE_UNITS[modality]),)


def _line(kind: LineKind, quantity: int, price: UnitPrice) -> LineItem:
    """The line of ``quantity`` units at ``price``: its exact USD amount for the record (an
    amount too long to be exact raises ``Inexact``), and its micro-credits from the price's
    rate, in integers (the same amount, rounded by the same rule)."""
    if quantity.__class__ is not int or quantity < 0:  # an int subclass but bool passes
        _check_count(kind, quantity)
    unit_usd, per = price.usd, price.per
    exact = _EXACT.divide(_EXACT.multiply(Decimal(quantity), unit_usd), per)
    # Positional: four of these are made per request (the reservation's and the charge's).
    return LineItem(kind, quantity, unit_usd, per, exact, price.micro_credits(quantity))


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
