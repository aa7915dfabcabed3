"""Typed access to the process's services and the caller from a request."""

from __future__ import annotations

from starlette.requests import HTTPConnection

from oneflow_ai.auth.credentials import credential_from_headers, secrets_equal
from oneflow_ai.auth.principal import MASTER, Principal
from oneflow_ai.errors import AuthenticationError
from oneflow_ai.gateway.services import Services

__all__ = ["authenticate", "get_services", "request_id"]


def get_services(connection: HTTPConnection) -> Services:
    services: Services = connection.app.state.services
    return services


def request_id(connection: HTTPConnection) -> str:
    value: str = connection.scope.get("state", {}).get("request_id", "")
    return value


async def authenticate(connection: HTTPConnection) -> Principal:
    """The caller, from `Authorization: Bearer`, `X-API-Key` or `x-api-key`; 401 otherwise."""
    credential = credential_from_headers(connection.scope["headers"])
    if credential is None:
        raise AuthenticationError(
            "No API key provided: send it as 'Authorization: Bearer <key>' or 'x-api-key: <key>'"
        )
    services = get_services(connection)
    master = services.settings.oneflow_master_key.get_secret_value()
    if secrets_equal(credential, master):
        return MASTER
    raise AuthenticationError("Invalid API key", code="invalid_api_key")
