"""OneFlow's own request bodies: JSON objects whose every field is known.

The administration and identity endpoints (keys, projects, users, credits, budgets, sign-in)
declare their bodies as pydantic models derived from `Body`: a field the model does not know is
a 400 naming it and the known ones (`unknown field; known: ...`, rendered by `api/errors.py`),
as `Fields.only` does for the bodies `/api/v1/request` and `/api/v1/estimate` read by hand. A
misspelt field is never silently dropped.

Their routers use `JsonRoute`: the body is read as JSON whatever its `Content-Type` says
(missing, or curl's `-d` default `application/x-www-form-urlencoded`), as the OpenAI- and
Anthropic-compatible endpoints do; a body that is not JSON is a 400 asking for a JSON object.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Any

from fastapi import Request, Response
from fastapi.routing import APIRoute
from pydantic import BaseModel, ConfigDict, model_validator
from pydantic_core import PydanticCustomError
from starlette.datastructures import Headers

__all__ = ["UNKNOWN_FIELD", "Body", "JsonRoute"]

#: The validation error type of an unknown field; its context names the field.
UNKNOWN_FIELD = "unknown_field"

_JSON = (b"content-type", b"application/json")


class Body(BaseModel):
    """A request body that refuses fields it does not declare."""

    model_config = ConfigDict(extra="forbid")

    @model_validator(mode="before")
    @classmethod
    def _known_fields_only(cls, data: Any) -> Any:
        if isinstance(data, dict):
            known = cls.model_fields
            for key in data:
                if key not in known:
                    raise PydanticCustomError(
                        UNKNOWN_FIELD,
                        "unknown field; known: {known}",
                        {"field": str(key), "known": ", ".join(sorted(known))},
                    )
        return data


class _JsonRequest(Request):
    """A request whose body FastAPI parses as JSON: its Content-Type reads as JSON (the scope,
    which logs and middleware see, is unchanged)."""

    @property
    def headers(self) -> Headers:
        headers: Headers | None = getattr(self, "_json_headers", None)
        if headers is None:
            raw = [(k, v) for k, v in self.scope["headers"] if k != b"content-type"]
            headers = self._json_headers = Headers(raw=[*raw, _JSON])
        return headers


class JsonRoute(APIRoute):
    """A route whose body is JSON whatever Content-Type the client sent (see the module)."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def as_json(request: Request) -> Response:
            return await handler(_JsonRequest(request.scope, request.receive))

        return as_json
