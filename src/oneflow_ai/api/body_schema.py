"""A request body's shape, declared once: the checks that read it and the schema that
documents it.

An endpoint declares its body as a table of `Field`s (`Obj`), each with a shape (`Str`, `Int`,
`Num`, `Bool`, `Arr`, `Either`, `StrOrStrs`: `api/body_shapes.py`, exported here too; `Tagged`,
`Obj`). `Obj.read(body)` checks the body against the table and raises the first wrong field as
a 400 `BadRequestError` whose `param` is its path (`messages[2].content`), with the messages of
`api/validation.py`; `Obj.schema(components)` writes the same table as the JSON Schema
`/openapi.json` shows (named objects become components). The endpoint then reads the checked
body into its canonical request with plain dictionary reads; the rules that tie one field to
another (a `tool` message needs `tool_call_id`) stay in that reader.

`null` is the same as an absent field everywhere (as the official SDKs send it), so an optional
field is documented as nullable. A declarative table costs about what the hand-written reads it
replaced did (`bench/parse_bench.py`), where pydantic models per request would cost several
times more.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from oneflow_ai.api.body_shapes import (
    Arr,
    Bool,
    Either,
    Int,
    Num,
    Shape,
    ShapeError,
    Str,
    StrOrStrs,
    Value,
    wrong,
)
from oneflow_ai.api.validation import invalid, type_name

__all__ = [
    "Arr",
    "Bool",
    "Either",
    "Field",
    "Int",
    "Num",
    "Obj",
    "Shape",
    "Str",
    "StrOrStrs",
    "Tagged",
    "Value",
]

_REF = "#/components/schemas/{name}"


@dataclass(frozen=True, slots=True)
class Field:
    key: str
    shape: Shape
    required: bool = False
    description: str | None = None
    examples: tuple[object, ...] = ()


@dataclass(frozen=True, slots=True)
class Obj(Shape):
    """An object of declared fields (others are let through unless `closed`); a `name` makes
    it a component of the document."""

    fields: tuple[Field, ...] = ()
    name: str | None = None
    description: str | None = None
    closed: bool = False
    _by_key: dict[str, Field] = field(init=False, repr=False, compare=False)
    _required: tuple[str, ...] = field(init=False, repr=False, compare=False)
    _plain: dict[str, type] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_by_key", {f.key: f for f in self.fields})
        object.__setattr__(self, "_required", tuple(f.key for f in self.fields if f.required))
        # Fields any string (or any boolean) satisfies: a value of that type needs no check.
        plain = {f.key: _plain_type(f.shape) for f in self.fields}
        object.__setattr__(self, "_plain", {k: t for k, t in plain.items() if t is not None})

    def check(self, value: object) -> None:
        """The fields present, in the body's order (the cost follows what the caller sent,
        not the table's length); when a required one is missing, the fields in the table's
        order, so that the first wrong one is named."""
        if not isinstance(value, dict):
            raise wrong("an object", value)
        for key in self._required:
            if value.get(key) is None:
                self._check_in_order(value)
        by_key, plain = self._by_key, self._plain
        for key, item in value.items():
            spec = by_key.get(key)
            if spec is not None:
                if item is not None and type(item) is not plain.get(key):
                    _check_field(spec, item)
            elif self.closed:
                known = ", ".join(sorted(by_key))
                raise ShapeError("unknown field; known: " + known, key)

    def _check_in_order(self, value: dict[str, Any]) -> None:
        for spec in self.fields:
            item = value.get(spec.key)
            if item is not None:
                _check_field(spec, item)
            elif spec.required:
                raise ShapeError("field required", spec.key)

    def read(self, body: dict[str, Any]) -> None:
        """Check a request body: a wrong field is a 400 `BadRequestError` naming its path."""
        try:
            self.check(body)
        except ShapeError as exc:
            raise invalid(exc.param(), exc.message) from None

    def variant(self, name: str, *, optional: tuple[str, ...]) -> Obj:
        """The same object under another name, with the `optional` fields not required."""
        fields = tuple(replace(f, required=False) if f.key in optional else f for f in self.fields)
        return replace(self, name=name, fields=fields)

    def schema(self, defs: dict[str, Any]) -> dict[str, Any]:
        if self.name is not None and self.name in defs:
            return {"$ref": _REF.format(name=self.name)}
        if self.name is not None:
            defs[self.name] = {}  # a placeholder while its fields are written
        out: dict[str, Any] = {"type": "object"}
        if self.description:
            out["description"] = self.description
        properties = {spec.key: _property(spec, defs) for spec in self.fields}
        if properties:
            out["properties"] = properties
        required = [spec.key for spec in self.fields if spec.required]
        if required:
            out["required"] = required
        if self.closed:
            out["additionalProperties"] = False
        if self.name is None:
            return out
        defs[self.name] = out
        return {"$ref": _REF.format(name=self.name)}


def _plain_type(shape: Shape) -> type | None:
    if shape == Str():
        return str
    if shape == Bool():
        return bool
    return None


def _check_field(spec: Field, value: object) -> None:
    try:
        spec.shape.check(value)
    except ShapeError as exc:
        exc.at.append(spec.key)
        raise


def _property(spec: Field, defs: dict[str, Any]) -> dict[str, Any]:
    out = spec.shape.schema(defs)
    if not spec.required:
        out = _nullable(out)
    if spec.description:
        out["description"] = spec.description
    if spec.examples:
        out["examples"] = list(spec.examples)
    return out


def _nullable(schema: dict[str, Any]) -> dict[str, Any]:
    """`schema` or null (null is the same as absent)."""
    kind = schema.get("type")
    if isinstance(kind, str):
        out = {**schema, "type": [kind, "null"]}
        if "enum" in out:
            out["enum"] = [*out["enum"], None]
        return out
    if set(schema) == {"anyOf"}:
        return {"anyOf": [*schema["anyOf"], {"type": "null"}]}
    return {"anyOf": [schema, {"type": "null"}]}


@dataclass(frozen=True, slots=True)
class Tagged(Shape):
    """An object whose `type` field says which of `variants` it is. A missing `type` is
    `default` when there is one; an unknown one is refused with `unknown` (a template of
    `{kind}`), or, without it, left to the reader (which knows the context)."""

    variants: Mapping[str, Obj]
    unknown: str | None = None
    default: Obj | None = None

    def check(self, value: object) -> None:
        if not isinstance(value, dict):
            raise wrong("an object", value)
        kind = value.get("type")
        if kind is None:
            if self.default is None:
                raise ShapeError("field required", "type")
            self.default.check(value)
            return
        if not isinstance(kind, str):
            raise ShapeError(f"must be a string, not {type_name(kind)}", "type")
        variant = self.variants.get(kind)
        if variant is not None:
            variant.check(value)
        elif self.unknown is not None:
            raise ShapeError(self.unknown.format(kind=kind), "type")

    def schema(self, defs: dict[str, Any]) -> dict[str, Any]:
        options = []
        for kind, variant in self.variants.items():
            option = variant.schema(defs)
            typed = {"type": {"const": kind}} if variant.name is None else {}
            if typed:
                option = {
                    **option,
                    "properties": {**typed, **option.get("properties", {})},
                    "required": ["type", *option.get("required", [])],
                }
            options.append(option)
        if self.default is not None:
            options.append(self.default.schema(defs))
        return {"anyOf": options}
