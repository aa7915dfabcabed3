"""Typed access to the process's services from a request."""

from __future__ import annotations

from starlette.requests import HTTPConnection

from oneflow_ai.gateway.services import Services

__all__ = ["get_services", "request_id"]


def get_services(connection: HTTPConnection) -> Services:
    services: Services = connection.app.state.services
    return services


def request_id(connection: HTTPConnection) -> str:
    value: str = connection.scope.get("state", {}).get("request_id", "")
    return value
