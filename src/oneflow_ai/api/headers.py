"""A request header read straight from the ASGI scope.

Starlette's `request.headers.get(name)` lower-cases and encodes the name on every call and,
for a header the request does not carry (the usual case for the optional `X-OneFlow-*`
headers a model call looks at), raises and catches a `KeyError` inside `Mapping.get`: about
four times the cost of this loop.
"""

from __future__ import annotations

import functools

from starlette.types import Scope

__all__ = ["header_value", "header_values", "wire_name"]


def header_value(scope: Scope, name: bytes) -> str | None:
    """The first value of the header ``name`` (lower-case, as ASGI gives names), as Starlette's
    `Headers` decodes it, or None."""
    for key, value in scope["headers"]:
        if key == name:
            text: str = value.decode("latin-1")
            return text
    return None


def header_values(scope: Scope, names: tuple[bytes, ...]) -> list[str | None]:
    """`header_value` of each of ``names``, in one pass over the headers."""
    found: list[str | None] = [None] * len(names)
    for key, value in scope["headers"]:
        if key in names:
            index = names.index(key)
            if found[index] is None:
                found[index] = value.decode("latin-1")
    return found


@functools.cache
def wire_name(name: str) -> bytes:
    """A response header's name as it goes on the wire (lower case, as Starlette's `Response`
    encodes it), encoded once per name instead of once per answer."""
    return name.lower().encode("latin-1")
