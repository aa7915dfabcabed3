"""Light validation of JSON request bodies: typed reads that name the offending field.

Bodies are parsed once with orjson and read field by field; a wrong field is a 400
`BadRequestError` whose `param` is its path (`messages[2].content`), rendered in the caller's
dialect by `api/errors.py`. Far cheaper than building pydantic models on the hot path.
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

import orjson

from oneflow_ai.errors import BadRequestError

__all__ = [
    "Fields",
    "invalid",
    "parse_object",
    "type_name",
]


def invalid(path: str, message: str) -> BadRequestError:
    return BadRequestError(f"Invalid request: '{path}': {message}", param=path)


def parse_object(raw: bytes) -> dict[str, Any]:
    """The body as a JSON object (400 if it is not JSON or not an object)."""
    if not raw:
        raise BadRequestError("Invalid request: the body is empty; send a JSON object")
    try:
        value = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise BadRequestError(f"Invalid request: the body is not valid JSON ({exc})") from None
    if not isinstance(value, dict):
        raise BadRequestError("Invalid request: the body must be a JSON object")
    return value


def type_name(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    return "an object"


class Fields:
    """Reads the fields of one JSON object; `path` prefixes the field names in errors."""

    __slots__ = ("data", "path")

    def __init__(self, data: object, path: str = "") -> None:
        if not isinstance(data, dict):
            raise invalid(path or "body", f"must be an object, not {type_name(data)}")
        self.data: dict[str, Any] = data
        self.path = path

    def only(self, known: Collection[str]) -> None:
        """Refuse a field the endpoint does not know (a misspelt one would be ignored)."""
        for key in self.data:
            if key not in known:
                raise invalid(self.at(key), "unknown field; known: " + ", ".join(sorted(known)))

    def at(self, key: str) -> str:
        return f"{self.path}.{key}" if self.path else key

    def __contains__(self, key: str) -> bool:
        return self.data.get(key) is not None

    def _missing(self, key: str) -> BadRequestError:
        return invalid(self.at(key), "field required")

    def _wrong(self, key: str, expected: str) -> BadRequestError:
        return invalid(self.at(key), f"must be {expected}, not {type_name(self.data.get(key))}")

    def req_str(
        self, key: str, *, choices: Collection[str] | None = None, max_length: int = 0
    ) -> str:
        value = self.data.get(key)
        if value is None:
            raise self._missing(key)
        return self._check_str(key, value, choices, max_length)

    def opt_str(
        self, key: str, *, choices: Collection[str] | None = None, max_length: int = 0
    ) -> str | None:
        value = self.data.get(key)
        if value is None:
            return None
        return self._check_str(key, value, choices, max_length)

    def _check_str(
        self, key: str, value: object, choices: Collection[str] | None, max_length: int
    ) -> str:
        if not isinstance(value, str):
            raise self._wrong(key, "a string")
        if choices is not None and value not in choices:
            raise invalid(self.at(key), f"must be one of {', '.join(sorted(choices))}")
        if max_length and len(value) > max_length:
            raise invalid(self.at(key), f"must be at most {max_length} characters")
        return value

    def opt_int(
        self, key: str, *, minimum: int | None = None, maximum: int | None = None
    ) -> int | None:
        value = self.data.get(key)
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int):
            if isinstance(value, float) and value.is_integer():
                value = int(value)
            else:
                raise self._wrong(key, "an integer")
        if minimum is not None and value < minimum:
            raise invalid(self.at(key), f"must be at least {minimum}")
        if maximum is not None and value > maximum:
            raise invalid(self.at(key), f"must be at most {maximum}")
        return value

    def opt_number(
        self, key: str, *, minimum: float | None = None, maximum: float | None = None
    ) -> float | None:
        value = self.data.get(key)
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise self._wrong(key, "a number")
        if minimum is not None and value < minimum:
            raise invalid(self.at(key), f"must be at least {minimum:g}")
        if maximum is not None and value > maximum:
            raise invalid(self.at(key), f"must be at most {maximum:g}")
        return float(value)

    def opt_bool(self, key: str) -> bool | None:
        value = self.data.get(key)
        if value is None:
            return None
        if not isinstance(value, bool):
            raise self._wrong(key, "a boolean")
        return value

    def req_list(self, key: str, *, non_empty: bool = False) -> list[Any]:
        value = self.data.get(key)
        if value is None:
            raise self._missing(key)
        if not isinstance(value, list):
            raise self._wrong(key, "an array")
        if non_empty and not value:
            raise invalid(self.at(key), "must not be empty")
        return value

    def opt_list(self, key: str) -> list[Any] | None:
        if self.data.get(key) is None:
            return None
        return self.req_list(key)

    def req_obj(self, key: str) -> Fields:
        value = self.data.get(key)
        if value is None:
            raise self._missing(key)
        return Fields(value, self.at(key))

    def opt_obj(self, key: str) -> Fields | None:
        if self.data.get(key) is None:
            return None
        return Fields(self.data[key], self.at(key))

    def stop(self, key: str, *, max_items: int) -> list[str]:
        """A string or an array of strings (stop sequences)."""
        value = self.data.get(key)
        if value is None:
            return []
        if isinstance(value, str):
            return [value]
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise self._wrong(key, "a string or an array of strings")
        if len(value) > max_items:
            raise invalid(self.at(key), f"must have at most {max_items} items")
        return list(value)
