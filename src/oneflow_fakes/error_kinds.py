"""How a fake provider works out an error from a fault: status, type, message, headers.

Every provider's table (in `errors.py`) names its error types with each one's usual status and
message, and each status's usual type; `ErrorKinds.resolve` fills in what a fault left out.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

__all__ = ["ErrorAnswer", "ErrorKinds", "Resolved", "words"]


@dataclass(slots=True)
class ErrorAnswer:
    status: int
    body: dict[str, object]
    headers: dict[str, str] = field(default_factory=dict)


def _seconds(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else f"{value:g}"


def words(error_type: str) -> str:
    return error_type.replace("_", " ")


class _Fill(dict[str, object]):
    def __missing__(self, key: str) -> str:
        return "unknown"


@dataclass(frozen=True, slots=True)
class Resolved:
    """An error worked out: its status, type, message and headers."""

    status: int
    error_type: str
    message: str
    headers: dict[str, str]


@dataclass(frozen=True, slots=True)
class ErrorKinds:
    """One provider's error types: each type's usual status and message (`{name}` is filled in
    from the keyword arguments), and each status's usual type. A type it does not know gets
    status 400 and `unknown(type)` as its message."""

    known: Mapping[str, tuple[int, str]]
    by_status: Mapping[int, str]
    client_error: str  # the type of a 4xx status without one of its own
    server_error: str  # the type of a 5xx status without one of its own
    unknown: Callable[[str], str] = words
    rate_limited: Callable[[], dict[str, str]] | None = None  # a 429's extra headers

    def resolve(
        self,
        status: int | None,
        error_type: str | None,
        message: str | None,
        retry_after: float | None,
        fill: Mapping[str, object],
    ) -> Resolved:
        if error_type is None:
            usual = status or 500
            fallback = self.client_error if usual < 500 else self.server_error
            error_type = self.by_status.get(usual, fallback)
        entry = self.known.get(error_type)
        if entry is None:
            default_status, text = 400, message or self.unknown(error_type)
        else:
            default_status, text = entry[0], message or entry[1].format_map(_Fill(fill))
        status = status or default_status
        headers = self.rate_limited() if status == 429 and self.rate_limited else {}
        if retry_after is not None:
            headers["retry-after"] = _seconds(retry_after)
        return Resolved(status, error_type, text, headers)
