"""Model catalog and price table: data files plus their loader and validation.

``packaged_catalog()`` is the catalog shipped with OneFlow; ``load_catalog(path)`` merges an
operator's YAML file over it (the ``CATALOG_PATH`` setting).
"""

from oneflow_ai.catalog.catalog import Catalog
from oneflow_ai.catalog.deployments import BALANCES, Balance, Deployment, ModelRouting
from oneflow_ai.catalog.errors import CatalogError, UnknownModelError
from oneflow_ai.catalog.loader import (
    load_catalog,
    merge_catalog_data,
    packaged_catalog,
    parse_catalog,
)
from oneflow_ai.catalog.schema import (
    AUTH_STYLES,
    BUILTIN_PROVIDERS,
    DEPLOYMENT_PLACEHOLDER,
    AuthStyle,
    ImagePrice,
    LatencyPrior,
    Modality,
    ModelEntry,
    PriceSource,
    Pricing,
    Provider,
    ProviderEntry,
    TokenizerName,
)

__all__ = [
    "AUTH_STYLES",
    "BALANCES",
    "BUILTIN_PROVIDERS",
    "DEPLOYMENT_PLACEHOLDER",
    "AuthStyle",
    "Balance",
    "Catalog",
    "CatalogError",
    "Deployment",
    "ImagePrice",
    "LatencyPrior",
    "Modality",
    "ModelEntry",
    "ModelRouting",
    "PriceSource",
    "Pricing",
    "Provider",
    "ProviderEntry",
    "TokenizerName",
    "UnknownModelError",
    "load_catalog",
    "merge_catalog_data",
    "packaged_catalog",
    "parse_catalog",
]
