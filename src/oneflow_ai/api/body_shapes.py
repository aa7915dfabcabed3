"""The shapes of JSON values a body table (`api/body_schema.py`) declares its fields with.

Each `Shape` checks a value, raising `ShapeError` (whose path the enclosing object and array
shapes fill in on the way out), and writes its JSON Schema. `Obj` and `Tagged`, the shapes
made of fields, are in `api/body_schema.py`.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from oneflow_ai.api.validation import type_name

__all__ = [
    "Arr",
    "Bool",
    "Either",
    "Int",
    "Num",
    "Shape",
    "ShapeError",
    "Str",
    "StrOrStrs",
    "Value",
    "wrong",
]


class Shape(ABC):
    """One kind of JSON value: `check` a value, or write its JSON Schema."""

    __slots__ = ()

    @abstractmethod
    def check(self, value: object) -> None:
        """Raise `ShapeError` if `value` does not have this shape."""

    @abstractmethod
    def schema(self, defs: dict[str, Any]) -> dict[str, Any]:
        """This shape's JSON Schema (named schemas it refers to go into `defs`)."""


class ShapeError(Exception):
    """A wrong value; `at` collects its path, innermost first, on the way out (so that a
    body that is right builds no path at all)."""

    def __init__(self, message: str, *at: str | int) -> None:
        super().__init__(message)
        self.message = message
        self.at: list[str | int] = list(at)

    def param(self) -> str:
        path = ""
        for part in reversed(self.at):
            if isinstance(part, int):
                path += f"[{part}]"
            else:
                path += f".{part}" if path else part
        return path or "body"


def wrong(expected: str, value: object) -> ShapeError:
    """A value of the wrong JSON type."""
    return ShapeError(f"must be {expected}, not {type_name(value)}")


@dataclass(frozen=True, slots=True)
class Value(Shape):
    """Any JSON value (read as it comes: a tool's arguments, a JSON schema), or one whose
    shape the endpoint's reader checks itself, documented by `documented`."""

    documented: Mapping[str, Any] | None = None

    def check(self, value: object) -> None:
        return None

    def schema(self, defs: dict[str, Any]) -> dict[str, Any]:
        return dict(self.documented) if self.documented is not None else {}


@dataclass(frozen=True, slots=True)
class Str(Shape):
    choices: tuple[str, ...] | None = None
    max_length: int = 0

    def check(self, value: object) -> None:
        if not isinstance(value, str):
            raise wrong("a string", value)
        if self.choices is not None and value not in self.choices:
            raise ShapeError(f"must be one of {', '.join(sorted(self.choices))}")
        if self.max_length and len(value) > self.max_length:
            raise ShapeError(f"must be at most {self.max_length} characters")

    def schema(self, defs: dict[str, Any]) -> dict[str, Any]:
        out: dict[str, Any] = {"type": "string"}
        if self.choices is not None:
            out["enum"] = list(self.choices)
        if self.max_length:
            out["maxLength"] = self.max_length
        return out


@dataclass(frozen=True, slots=True)
class Int(Shape):
    """An integer (`2.0` counts as one, as JSON Schema says)."""

    minimum: int | None = None
    maximum: int | None = None

    def check(self, value: object) -> None:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise wrong("an integer", value)
        if isinstance(value, float) and not value.is_integer():
            raise wrong("an integer", value)
        if self.minimum is not None and value < self.minimum:
            raise ShapeError(f"must be at least {self.minimum}")
        if self.maximum is not None and value > self.maximum:
            raise ShapeError(f"must be at most {self.maximum}")

    def schema(self, defs: dict[str, Any]) -> dict[str, Any]:
        return _bounded("integer", self.minimum, self.maximum)


@dataclass(frozen=True, slots=True)
class Num(Shape):
    minimum: float | None = None
    maximum: float | None = None

    def check(self, value: object) -> None:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise wrong("a number", value)
        if self.minimum is not None and value < self.minimum:
            raise ShapeError(f"must be at least {self.minimum:g}")
        if self.maximum is not None and value > self.maximum:
            raise ShapeError(f"must be at most {self.maximum:g}")

    def schema(self, defs: dict[str, Any]) -> dict[str, Any]:
        return _bounded("number", self.minimum, self.maximum)


def _bounded(kind: str, minimum: float | None, maximum: float | None) -> dict[str, Any]:
    out: dict[str, Any] = {"type": kind}
    if minimum is not None:
        out["minimum"] = minimum
    if maximum is not None:
        out["maximum"] = maximum
    return out


@dataclass(frozen=True, slots=True)
class Bool(Shape):
    def check(self, value: object) -> None:
        if not isinstance(value, bool):
            raise wrong("a boolean", value)

    def schema(self, defs: dict[str, Any]) -> dict[str, Any]:
        return {"type": "boolean"}


@dataclass(frozen=True, slots=True)
class Arr(Shape):
    items: Shape = Value()
    non_empty: bool = False

    def check(self, value: object) -> None:
        if not isinstance(value, list):
            raise wrong("an array", value)
        if self.non_empty and not value:
            raise ShapeError("must not be empty")
        check = self.items.check
        for i, item in enumerate(value):
            try:
                check(item)
            except ShapeError as exc:
                exc.at.append(i)
                raise

    def schema(self, defs: dict[str, Any]) -> dict[str, Any]:
        out: dict[str, Any] = {"type": "array", "items": self.items.schema(defs)}
        if self.non_empty:
            out["minItems"] = 1
        return out


@dataclass(frozen=True, slots=True)
class StrOrStrs(Shape):
    """A string or an array of at most `max_items` strings (stop sequences)."""

    max_items: int

    def check(self, value: object) -> None:
        if isinstance(value, str):
            return
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise wrong("a string or an array of strings", value)
        if len(value) > self.max_items:
            raise ShapeError(f"must have at most {self.max_items} items")

    def schema(self, defs: dict[str, Any]) -> dict[str, Any]:
        strings = {"type": "array", "items": {"type": "string"}, "maxItems": self.max_items}
        return {"anyOf": [{"type": "string"}, strings]}


@dataclass(frozen=True, slots=True)
class Either(Shape):
    """A string or something else (an array, an object): the option of the value's JSON
    type is checked; a value of any other type is refused as not `expected`."""

    text: Str
    other: Shape
    expected: str

    def check(self, value: object) -> None:
        if isinstance(value, str):
            self.text.check(value)
        elif isinstance(value, list) == isinstance(self.other, Arr) and isinstance(
            value, list | dict
        ):
            self.other.check(value)
        else:
            raise ShapeError(f"must be {self.expected}")

    def schema(self, defs: dict[str, Any]) -> dict[str, Any]:
        return {"anyOf": [self.text.schema(defs), self.other.schema(defs)]}
