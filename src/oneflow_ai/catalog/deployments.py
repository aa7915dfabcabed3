"""How a catalog model is served and what stands in for it: the catalog's `routing:` section.

```yaml
routing:
  gpt-4o:
    balance: weighted              # or least_in_flight
    deployments:                   # who serves it (default: the model's own provider)
      - {provider: openai, weight: 3}
      - {provider: openai-org2, weight: 1}          # a second key, declared under providers
      - {provider: azure-eastus, model: gpt4o-prod} # the name that provider knows it by
    fallbacks: [claude-3-5-sonnet-20241022, gpt-4o-mini]   # tried in order on failure
```

Each deployment has its own circuit breaker and rate-limit headroom; a model with several is
balanced across them (`balance`). `fallbacks` are other catalog models tried, in order, when
every deployment of this one failed before any content reached the caller. The catalog
checks what spans entries (the model, the providers and the fallbacks exist; see
`Catalog._check_routing`).
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

__all__ = ["BALANCES", "Balance", "Deployment", "ModelRouting"]

Balance = Literal["weighted", "least_in_flight"]
"""`weighted`: calls spread in proportion to the weights (smooth weighted round robin);
`least_in_flight`: the deployment with the fewest calls in flight per unit of weight."""
BALANCES: tuple[Balance, ...] = ("weighted", "least_in_flight")


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Deployment(_Frozen):
    """One provider serving a model: `provider` (built in or declared under `providers:`),
    `model` (the name that provider knows the model by; the catalog id when unset; Azure's
    deployment name) and `weight` (0: a standby, called only when the others cannot be)."""

    provider: str = Field(min_length=1)
    model: str | None = Field(default=None, min_length=1)
    weight: int = Field(default=1, ge=0, le=1_000_000)

    def upstream_model(self, model_id: str) -> str:
        return self.model if self.model is not None else model_id


class ModelRouting(_Frozen):
    """The `routing:` entry of one model (see the module docstring)."""

    balance: Balance = "weighted"
    deployments: tuple[Deployment, ...] = ()
    fallbacks: tuple[str, ...] = ()

    @model_validator(mode="after")
    def _check(self) -> ModelRouting:
        seen: set[tuple[str, str | None]] = set()
        for index, deployment in enumerate(self.deployments):
            key = (deployment.provider, deployment.model)
            if key in seen:
                raise ValueError(
                    f"deployments.{index}: provider {deployment.provider!r} with the same "
                    "model name is already a deployment"
                )
            seen.add(key)
        if self.deployments and not any(d.weight > 0 for d in self.deployments):
            raise ValueError("deployments: at least one needs a weight above 0")
        if len(set(self.fallbacks)) != len(self.fallbacks):
            raise ValueError("fallbacks: names a model twice")
        return self
