"""Rate-limit policies as plain data: how many requests and tokens a scope may use.

A scope is an API key (or a signed-in user), a project, or an upstream provider. A `None` field
inherits (from the project's or the deployment's defaults); a positive integer is the limit.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields

__all__ = ["LIMIT_FIELDS", "MAX_LIMIT", "LimitPolicy"]

_FIELDS = ("requests_per_minute", "requests_per_hour", "tokens_per_minute")
LIMIT_FIELDS = _FIELDS
#: The largest limit: far above any real one, and an integer every JSON reader (and 64-bit
#: counter) holds exactly.
MAX_LIMIT = 10**12


@dataclass(frozen=True, slots=True)
class LimitPolicy:
    requests_per_minute: int | None = None
    requests_per_hour: int | None = None
    tokens_per_minute: int | None = None

    def __post_init__(self) -> None:
        for name in _FIELDS:
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or not 1 <= value <= MAX_LIMIT):
                raise ValueError(
                    f"{name} must be a positive integer up to {MAX_LIMIT} or null, not {value!r}"
                )

    @property
    def is_empty(self) -> bool:
        return all(getattr(self, name) is None for name in _FIELDS)

    def over(self, base: LimitPolicy) -> LimitPolicy:
        """This policy's fields where set, `base`'s elsewhere."""
        return LimitPolicy(
            **{
                name: getattr(self, name)
                if getattr(self, name) is not None
                else getattr(base, name)
                for name in _FIELDS
            }
        )

    @classmethod
    def changed(
        cls, current: LimitPolicy | None, changes: Mapping[str, int | None]
    ) -> LimitPolicy | None:
        """`current` with the fields named in `changes` set (a number) or removed (None) and
        every other field kept; None when no limit is left. Unknown fields are an error."""
        unknown = set(changes) - set(_FIELDS)
        if unknown:
            raise ValueError(f"unknown limit field(s): {', '.join(sorted(unknown))}")
        base = current if current is not None else cls()
        policy = cls(**{name: changes.get(name, getattr(base, name)) for name in _FIELDS})
        return None if policy.is_empty else policy

    @classmethod
    def from_mapping(cls, data: Mapping[str, object] | None) -> LimitPolicy | None:
        """Parse stored or submitted JSON; unknown fields are an error, an empty mapping is None."""
        if not data:
            return None
        unknown = set(data) - set(_FIELDS)
        if unknown:
            raise ValueError(f"unknown limit field(s): {', '.join(sorted(unknown))}")
        values: dict[str, int | None] = {}
        for name in _FIELDS:
            value = data.get(name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int)):
                raise ValueError(f"{name} must be a positive integer or null, not {value!r}")
            values[name] = value
        policy = cls(**values)
        return None if policy.is_empty else policy

    def to_mapping(self) -> dict[str, int]:
        """The set fields only (what is stored and returned by the API)."""
        return {f.name: getattr(self, f.name) for f in fields(self) if getattr(self, f.name)}
