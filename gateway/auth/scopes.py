"""Which scope each route needs: ingest writes points, read reads, admin changes definitions, rules, alerts.

Decided here by method and path template, in one table, rather than on each route, so a route added
later without thought needs admin (fail closed) until it is listed.
"""

from typing import Any

from litestar.connection import ASGIConnection

from telemetry_schemas.enums import ApiKeyScope

_PREFIX = "/api/v1/telemetry"
_INGEST = {
    ("POST", f"{_PREFIX}/devices/{{device_id}}/telemetry"),
    ("POST", f"{_PREFIX}/devices/{{device_id}}/telemetry/batch"),
    ("POST", f"{_PREFIX}/bulk"),
    # InfluxDB line protocol (2.x and 1.x paths, where Influx clients and Telegraf write).
    ("POST", "/api/v2/write"),
    ("POST", "/write"),
}
# Reads that take a body, so they are POSTs; and a dashboard's real-time subscriptions (create, renew the
# connect token, cancel), which change nothing but the caller's own session.
_READ_POSTS = {
    ("POST", f"{_PREFIX}/query"),
    ("POST", f"{_PREFIX}/alerts/rules/backtest"),
    ("POST", f"{_PREFIX}/subscribe"),
    ("POST", f"{_PREFIX}/subscribe/{{subscription_id}}/token"),
    ("DELETE", f"{_PREFIX}/subscribe/{{subscription_id}}"),
}


def required_scope(connection: ASGIConnection[Any, Any, Any, Any]) -> ApiKeyScope:
    """The scope the matched route needs; WebSocket streams read."""
    if connection.scope["type"] == "websocket":
        return ApiKeyScope.READ
    method = connection.scope.get("method", "GET")
    route = (method, connection.scope.get("path_template", ""))
    if route in _INGEST:
        return ApiKeyScope.INGEST
    if method in ("GET", "HEAD") or route in _READ_POSTS:
        return ApiKeyScope.READ
    return ApiKeyScope.ADMIN
