"""Loading the catalog: the packaged ``models.yaml``, optionally merged with an operator's file.

An operator's file may also declare OpenAI-compatible providers under ``providers:`` (see
:class:`~oneflow_ai.catalog.schema.ProviderEntry`), whose models are then ordinary entries.

An override file has the same shape as ``models.yaml`` and any subset of it. It is merged over
the packaged catalog key by key: mappings merge recursively, anything else (numbers, strings,
lists such as ``aliases`` or ``pricing.per_image``) replaces the packaged value. A model id not
in the packaged catalog adds a model (it must then be complete); ``enabled: false`` hides one.
Unless the override sets ``price_table_version`` itself, the version becomes
``<packaged version>+override.<first 12 hex of the override file's sha256>`` so that every
recorded cost names the exact price table used.

Every problem raises one :class:`CatalogError` naming the entry and the field.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Mapping
from datetime import date
from functools import cache
from importlib import resources
from pathlib import Path

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from oneflow_ai.catalog.catalog import Catalog
from oneflow_ai.catalog.deployments import ModelRouting
from oneflow_ai.catalog.errors import CatalogError
from oneflow_ai.catalog.schema import ModelEntry, PriceSource, ProviderEntry

__all__ = ["load_catalog", "merge_catalog_data", "packaged_catalog", "parse_catalog"]

_PACKAGED = "models.yaml"
_TOP_LEVEL = frozenset(
    {"price_table_version", "prices_as_of", "sources", "providers", "models", "routing"}
)


class _Header(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    price_table_version: str = Field(min_length=1)
    prices_as_of: date
    sources: dict[str, PriceSource]


@cache
def packaged_catalog() -> Catalog:
    """The catalog shipped in the package (parsed once per process)."""
    return parse_catalog(_read_packaged(), origin=f"packaged {_PACKAGED}")


def load_catalog(override_path: str | os.PathLike[str] | None = None) -> Catalog:
    """The packaged catalog, with the YAML file at ``override_path`` merged over it if given."""
    if override_path is None:
        return packaged_catalog()
    path = Path(override_path)
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise CatalogError(f"catalog override {str(path)!r}: cannot read: {exc.strerror}") from exc
    override = _parse_yaml(raw.decode("utf-8", errors="replace"), origin=str(path))
    merged = merge_catalog_data(_read_packaged(), override)
    if "price_table_version" not in override:
        digest = hashlib.sha256(raw).hexdigest()[:12]
        merged["price_table_version"] = f"{merged['price_table_version']}+override.{digest}"
    return parse_catalog(merged, origin=str(path))


def merge_catalog_data(
    base: Mapping[str, object], override: Mapping[str, object]
) -> dict[str, object]:
    """Merge ``override`` over ``base``: mappings recursively, other values replaced."""
    merged: dict[str, object] = dict(base)
    for key, value in override.items():
        current = merged.get(key)
        if isinstance(current, Mapping) and isinstance(value, Mapping):
            merged[key] = merge_catalog_data(_str_keys(current), _str_keys(value))
        else:
            merged[key] = value
    return merged


def parse_catalog(data: Mapping[str, object], *, origin: str = "catalog") -> Catalog:
    """Validate catalog data (the YAML's top-level mapping) into a :class:`Catalog`."""
    unknown = sorted(set(data) - _TOP_LEVEL)
    if unknown:
        raise CatalogError(f"catalog ({origin}): unknown top-level key {unknown[0]!r}")
    try:
        header = _Header.model_validate(
            {k: v for k, v in data.items() if k not in ("models", "providers", "routing")}
        )
    except ValidationError as exc:
        raise CatalogError(f"catalog ({origin}): {_describe(exc)}") from None
    models = data.get("models")
    if not isinstance(models, Mapping) or not models:
        raise CatalogError(
            f"catalog ({origin}): models: must be a non-empty mapping of id to model"
        )
    entries = [_parse_entry(str(model_id), raw) for model_id, raw in models.items()]
    return Catalog(
        price_table_version=header.price_table_version,
        prices_as_of=header.prices_as_of,
        sources=header.sources,
        models=entries,
        providers=_parse_providers(data.get("providers"), origin),
        routing=_parse_routing(data.get("routing"), origin),
    )


def _parse_routing(data: object, origin: str) -> dict[str, ModelRouting]:
    if data is None:
        return {}
    if not isinstance(data, Mapping):
        raise CatalogError(f"catalog ({origin}): routing: must be a mapping of model to routing")
    routing = {}
    for name, raw in data.items():
        if not isinstance(raw, Mapping):
            raise CatalogError(f"catalog routing {name!r}: must be a mapping of fields")
        try:
            routing[str(name)] = ModelRouting.model_validate(_str_keys(raw))
        except ValidationError as exc:
            raise CatalogError(f"catalog routing {name!r}: {_describe(exc)}") from None
    return routing


def _parse_providers(data: object, origin: str) -> list[ProviderEntry]:
    if data is None:
        return []
    if not isinstance(data, Mapping):
        raise CatalogError(f"catalog ({origin}): providers: must be a mapping of name to provider")
    providers = []
    for name, raw in data.items():
        if not isinstance(raw, Mapping):
            raise CatalogError(f"catalog provider {name!r}: must be a mapping of fields")
        try:
            providers.append(ProviderEntry.model_validate({**_str_keys(raw), "name": str(name)}))
        except ValidationError as exc:
            raise CatalogError(f"catalog provider {name!r}: {_describe(exc)}") from None
    return providers


def _parse_entry(model_id: str, raw: object) -> ModelEntry:
    if not isinstance(raw, Mapping):
        raise CatalogError(f"catalog entry {model_id!r}: must be a mapping of fields")
    fields = _str_keys(raw)
    if "id" in fields and fields["id"] != model_id:
        raise CatalogError(f"catalog entry {model_id!r}: id: differs from the entry's key")
    try:
        return ModelEntry.model_validate({**fields, "id": model_id})
    except ValidationError as exc:
        raise CatalogError(f"catalog entry {model_id!r}: {_describe(exc)}") from None


def _describe(exc: ValidationError) -> str:
    parts = []
    for error in exc.errors(include_url=False):
        location = ".".join(str(part) for part in error["loc"])
        message = error["msg"].removeprefix("Value error, ")
        parts.append(f"{location}: {message}" if location else message)
    return "; ".join(parts)


def _read_packaged() -> dict[str, object]:
    text = resources.files("oneflow_ai.catalog").joinpath(_PACKAGED).read_text(encoding="utf-8")
    return _parse_yaml(text, origin=f"packaged {_PACKAGED}")


def _parse_yaml(text: str, *, origin: str) -> dict[str, object]:
    try:
        data: object = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise CatalogError(f"catalog ({origin}): not valid YAML: {exc}") from None
    if data is None:
        return {}
    if not isinstance(data, Mapping):
        raise CatalogError(f"catalog ({origin}): the top level must be a mapping")
    return _str_keys(data)


def _str_keys(mapping: Mapping[object, object]) -> dict[str, object]:
    return {str(key): value for key, value in mapping.items()}
