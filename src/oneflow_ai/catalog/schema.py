"""The shape of one catalog entry, as validated pydantic models (all frozen).

Prices are USD as decimal strings in the YAML (``"2.50"``), held as ``Decimal``; a float (an
unquoted ``2.5`` in YAML) is refused so that no price ever passes through binary floating point.
Quality scores and latency priors are not money and are plain numbers.
"""

from __future__ import annotations

from datetime import date
from decimal import Decimal
from typing import Annotated, Literal, get_args

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    field_validator,
    model_validator,
)

from oneflow_ai.domain.money import as_decimal

__all__ = [
    "AUTH_STYLES",
    "BUILTIN_PROVIDERS",
    "DEPLOYMENT_PLACEHOLDER",
    "AuthStyle",
    "ImagePrice",
    "LatencyPrior",
    "Modality",
    "ModelEntry",
    "Price",
    "PriceSource",
    "Pricing",
    "Provider",
    "ProviderEntry",
    "TokenizerName",
]

#: The providers OneFlow has an adapter for; others are declared under `providers:`.
Provider = Literal["openai", "anthropic", "stability", "elevenlabs"]
BUILTIN_PROVIDERS: tuple[Provider, ...] = get_args(Provider)
AuthStyle = Literal["bearer", "api-key", "none"]
"""How a declared provider takes its key: `Authorization: Bearer <key>` (OpenAI's way, and
most compatible APIs'), an `api-key: <key>` header (Azure OpenAI), or no credential at all (a
server of one's own)."""
AUTH_STYLES: tuple[AuthStyle, ...] = get_args(AuthStyle)
Modality = Literal["text", "image", "audio", "embedding", "transcription"]
"""`audio` is speech synthesis (text in, audio out); `transcription` is speech to text;
`embedding` turns text into vectors."""
#: ``claude_approx`` is OneFlow's documented estimate for Claude (see ``billing.tokenizer``).
TokenizerName = Literal["cl100k_base", "o200k_base", "claude_approx"]


def _parse_price(value: object) -> Decimal:
    if isinstance(value, float):
        raise ValueError(
            f'must be a decimal string such as "{value}", not a float (quote it in YAML)'
        )
    if isinstance(value, bool) or not isinstance(value, Decimal | int | str):
        raise ValueError(f'must be a decimal string such as "2.50", got {type(value).__name__}')
    try:
        price = as_decimal(value)
    except (TypeError, ValueError) as exc:
        raise ValueError(str(exc)) from None
    if price < 0:
        raise ValueError(f"must not be negative, got {value!r}")
    return price


#: A non-negative USD amount given as a decimal string (or an int); floats are refused.
Price = Annotated[Decimal, BeforeValidator(_parse_price)]


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class ImagePrice(_Frozen):
    """Price of one generated image; ``size``/``quality`` of ``None`` match any value."""

    size: str | None = None
    quality: str | None = None
    usd: Price

    def matches(self, size: str | None, quality: str | None) -> bool:
        """Whether this row prices an image of ``size`` and ``quality``."""
        return (self.size is None or self.size == size) and (
            self.quality is None or self.quality == quality
        )


class Pricing(_Frozen):
    """Prices of one model in USD. Which fields apply depends on the model's modality.

    text: ``input_per_mtok`` and ``output_per_mtok`` (per 1M tokens), and optionally the
    prices of the prompt-cache token classes: ``cached_input_per_mtok`` (OpenAI's cached
    input, Anthropic's cache reads), ``cache_write_5m_per_mtok`` and
    ``cache_write_1h_per_mtok`` (Anthropic's 5-minute and 1-hour cache writes); a class
    without its own price is billed at ``input_per_mtok``;
    image: ``per_image`` rows by size and quality, with the defaults used when a request
    names none; audio: ``per_1k_characters`` (per 1,000 input characters); embedding:
    ``input_per_mtok`` alone; transcription: ``per_minute`` (per minute of input audio, billed
    by the second).
    """

    input_per_mtok: Price | None = None
    output_per_mtok: Price | None = None
    # Token classes billed apart from plain input (per 1M tokens). None: the input price.
    cached_input_per_mtok: Price | None = None
    cache_write_5m_per_mtok: Price | None = None
    cache_write_1h_per_mtok: Price | None = None
    per_image: tuple[ImagePrice, ...] = ()
    default_image_size: str | None = None
    default_image_quality: str | None = None
    per_1k_characters: Price | None = None
    per_minute: Price | None = None

    def image_price(self, size: str | None, quality: str | None) -> ImagePrice | None:
        """The first ``per_image`` row matching ``size``/``quality`` (defaults when ``None``)."""
        size = size if size is not None else self.default_image_size
        quality = quality if quality is not None else self.default_image_quality
        return next((row for row in self.per_image if row.matches(size, quality)), None)

    def max_image_usd(self) -> Decimal | None:
        """The highest per-image price (the worst case when the size is not yet known)."""
        return max((row.usd for row in self.per_image), default=None)


class LatencyPrior(_Frozen):
    """Expected latency before any traffic is measured (a router's starting point).

    ``ttft_ms`` is the expected time to the first token (text), the first audio byte (audio)
    or the finished image (image); ``ms_per_output_token`` the expected time per output token
    of a text model (0 for others).
    """

    ttft_ms: float = Field(ge=0)
    ms_per_output_token: float = Field(default=0, ge=0)

    def expected_ms(self, output_tokens: int = 0) -> float:
        """Expected total latency of a response with ``output_tokens`` tokens."""
        return self.ttft_ms + self.ms_per_output_token * output_tokens


class PriceSource(_Frozen):
    """Where prices were taken from."""

    url: str = Field(pattern=r"^https?://")
    retrieved: date | None = None
    note: str | None = None


class ModelEntry(_Frozen):
    """One model in the catalog.

    A model is billable when it is ``free`` or has ``pricing``; a model with neither is kept
    (so it can be listed) but refused by billing (:attr:`is_priced` is ``False``).

    An embedding model has a ``tokenizer``, a ``context_window`` (the most tokens one input
    may have) and ``dimensions`` (the length of its vectors); ``reducible_dimensions`` says
    whether a request may ask for shorter vectors (OpenAI's ``dimensions`` parameter).
    """

    id: str = Field(min_length=1)
    provider: str = Field(min_length=1)  # a built-in provider or one under `providers:`
    modality: Modality
    display_name: str | None = None
    aliases: tuple[str, ...] = ()
    enabled: bool = True
    context_window: int | None = Field(default=None, gt=0)
    max_output_tokens: int | None = Field(default=None, gt=0)
    tokenizer: TokenizerName | None = None
    dimensions: int | None = Field(default=None, gt=0)
    reducible_dimensions: bool = False
    quality: float = Field(ge=0, le=1)
    latency: LatencyPrior
    free: bool = False
    pricing: Pricing | None = None
    price_source: str | None = None
    # ---- models and prices (issue 15): what the model takes, and how sure the prices are
    #: The model accepts images in its prompt (OpenAI `image_url` parts, Anthropic `image`).
    image_input: bool = False
    #: The model reasons before answering: it takes OpenAI's `reasoning_effort` (OpenAI
    #: models) or Anthropic's `thinking` (Claude models), and reports reasoning tokens.
    reasoning: bool = False
    #: The date this row's prices were read (the catalog's `prices_as_of` when not given).
    prices_as_of: date | None = None
    #: False when the price could not be read from the vendor's own page (the row's comment
    #: and its source's note say where it came from instead).
    price_verified: bool = True
    #: Whether automatic routing (a request naming no model; the router's strategy-ranked
    #: fallbacks) may choose this model. False: served only when named (as the model, or as
    #: a configured or requested fallback).
    auto_route: bool = True
    #: The day the provider stops serving the model (its announced end of life). From that
    #: day the gateway no longer offers it: a request naming it is a 404 that names the
    #: `replacement`, automatic routing and fallback chains skip it, `/v1/models` omits it.
    #: Prices stay, so calls admitted before the day are still billed.
    retires_on: date | None = None
    #: The catalog model to use instead once this one retires (an id or alias).
    replacement: str | None = None
    #: Where the retirement date was read (a key of `sources`, like `price_source`).
    retirement_source: str | None = None
    # ---- end of models and prices

    def retired(self, today: date) -> bool:
        """Whether the model's end of life has come by ``today``."""
        return self.retires_on is not None and today >= self.retires_on

    @property
    def is_priced(self) -> bool:
        """Whether billing can charge for this model (it is free or has prices)."""
        return self.free or self.pricing is not None

    @property
    def names(self) -> tuple[str, ...]:
        """The id followed by the aliases."""
        return (self.id, *self.aliases)

    @model_validator(mode="after")
    def _check_consistency(self) -> ModelEntry:
        if self.modality == "text":
            for name in ("tokenizer", "context_window", "max_output_tokens"):
                if getattr(self, name) is None:
                    raise ValueError(f"{name}: required for a text model")
        if self.modality == "embedding":
            for name in ("tokenizer", "context_window", "dimensions"):
                if getattr(self, name) is None:
                    raise ValueError(f"{name}: required for an embedding model")
            if self.max_output_tokens is not None:
                raise ValueError("max_output_tokens: an embedding model writes no tokens")
        elif self.dimensions is not None or self.reducible_dimensions:
            raise ValueError(
                f"dimensions: only embedding models have them, this is {self.modality}"
            )
        if (
            self.context_window is not None
            and self.max_output_tokens is not None
            and self.max_output_tokens > self.context_window
        ):
            raise ValueError("max_output_tokens: larger than context_window")
        if self.modality not in ("text", "embedding") and self.tokenizer is not None:
            raise ValueError(
                f"tokenizer: only text and embedding models have one, this is {self.modality}"
            )
        if self.free and self.pricing is not None:
            raise ValueError("free: a free model must not also have pricing")
        if self.pricing is not None:
            _check_pricing_fits(self.modality, self.pricing)
            if self.price_source is None:
                raise ValueError("price_source: required when pricing is given")
        if (self.replacement is not None or self.retirement_source is not None) and (
            self.retires_on is None
        ):
            raise ValueError("retires_on: required with replacement or retirement_source")
        if len(set(self.names)) != len(self.names):
            raise ValueError("aliases: repeats the id or another alias")
        return self


_PRICE_FIELDS: dict[Modality, tuple[str, ...]] = {
    "text": ("input_per_mtok", "output_per_mtok"),
    "image": ("per_image",),
    "audio": ("per_1k_characters",),
    "embedding": ("input_per_mtok",),
    "transcription": ("per_minute",),
}

_TOKEN_CLASS_PRICES = (
    "cached_input_per_mtok",
    "cache_write_5m_per_mtok",
    "cache_write_1h_per_mtok",
)


def _check_pricing_fits(modality: Modality, pricing: Pricing) -> None:
    needed = _PRICE_FIELDS[modality]
    for name in needed:
        if getattr(pricing, name) in (None, ()):
            raise ValueError(f"pricing.{name}: required for a {modality} model")
    for names in _PRICE_FIELDS.values():
        for name in names:
            if name not in needed and getattr(pricing, name) not in (None, ()):
                raise ValueError(f"pricing.{name}: not used by a {modality} model")
    if modality != "text":
        for name in _TOKEN_CLASS_PRICES:
            if getattr(pricing, name) is not None:
                raise ValueError(f"pricing.{name}: not used by a {modality} model")
    if modality == "image" and pricing.image_price(None, None) is None:
        raise ValueError(
            "pricing.default_image_size: no per_image row matches the default size and quality"
        )


class ProviderEntry(_Frozen):
    """A provider declared by configuration: any API that speaks OpenAI's Chat Completions
    (vLLM, Ollama, Azure OpenAI, Groq, Together, Mistral, OpenRouter, ...), served by the same
    OpenAI transforms as OpenAI itself. Its key, when its `auth` takes one, is the setting
    `PROVIDER_API_KEYS` (a JSON object of provider name to key), never this file; `headers`
    and `query` are sent with every request (`query: {api-version: ...}` for Azure). Its models
    are catalog models with `provider: <name>`, text models with prices (zero allowed, or
    `free: true`). `chat_path` is the chat endpoint after `base_url`; `{deployment}` in it
    is replaced by the name the provider knows the model by (Azure OpenAI's
    `/openai/deployments/{deployment}/chat/completions`)."""

    name: str = Field(pattern=r"^[a-z0-9][a-z0-9_.-]{0,47}$")
    api: Literal["openai"] = "openai"
    base_url: str
    auth: AuthStyle
    headers: dict[str, str] = Field(default_factory=dict)
    query: dict[str, str] = Field(default_factory=dict)
    chat_path: str = "/chat/completions"
    connect_timeout: float | None = Field(default=None, gt=0)
    read_timeout: float | None = Field(default=None, gt=0)

    @field_validator("base_url")
    @classmethod
    def _base_url(cls, value: str) -> str:
        if not value.startswith(("http://", "https://")) or any(c.isspace() for c in value):
            raise ValueError("must be an http:// or https:// URL")
        return value.rstrip("/")

    @field_validator("chat_path")
    @classmethod
    def _chat_path(cls, value: str) -> str:
        if not value.startswith("/") or any(c.isspace() or c in "?#" for c in value):
            raise ValueError("must be a path starting with / (no query: use `query`)")
        rest = value.replace(DEPLOYMENT_PLACEHOLDER, "")
        if "{" in rest or "}" in rest:
            raise ValueError(f"the only placeholder is {DEPLOYMENT_PLACEHOLDER}")
        return value

    @model_validator(mode="after")
    def _check(self) -> ProviderEntry:
        if self.name in BUILTIN_PROVIDERS:
            raise ValueError(f"name: {self.name!r} is a built-in provider")
        secret = next((h for h in self.headers if h.lower() in _CREDENTIAL_HEADERS), None)
        if secret is not None:
            raise ValueError(
                f"headers.{secret}: credentials do not belong in the catalog; set `auth` and "
                "the key in PROVIDER_API_KEYS"
            )
        return self


#: In `ProviderEntry.chat_path`: the name the provider knows the model by.
DEPLOYMENT_PLACEHOLDER = "{deployment}"
_CREDENTIAL_HEADERS = frozenset({"authorization", "api-key", "x-api-key"})
