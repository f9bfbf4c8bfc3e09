"""The Litestar guard on every route but /health* and the console's files; helpers routes call about their caller."""

from collections.abc import Iterable
from typing import Any

from litestar import Request
from litestar.connection import ASGIConnection
from litestar.exceptions import PermissionDeniedException
from litestar.handlers.base import BaseRouteHandler

from gateway.auth.authenticator import authenticate, authenticator_of
from gateway.auth.principal import Principal
from gateway.auth.scopes import required_scope
from telemetry_schemas.enums import ApiKeyScope

SCOPE_KEY = "auth"  # the ASGI scope key Litestar itself reserves for authentication results


async def require_credentials(connection: ASGIConnection[Any, Any, Any, Any], handler: BaseRouteHandler) -> None:
    """Authenticate (401), charge the request rate (429), check the scope (403) and the device (403).

    Routes opt out with ``opt={"public": True}`` (/health and the web console's page and files), or with
    ``opt={"public_when": "<setting>"}`` when an operator switch decides (``/health/detailed`` with
    TELEMETRY_PUBLIC_HEALTH_DETAILS).
    """
    switch = handler.opt.get("public_when")
    if handler.opt.get("public") or (switch and getattr(connection.app.state.gw.settings, switch)):
        return
    principal = await authenticate(connection)
    connection.scope[SCOPE_KEY] = principal  # type: ignore[literal-required]
    authenticator_of(connection).requests.charge(principal.limit_key)
    needed = required_scope(connection)
    if not principal.may(needed):
        method = connection.scope.get("method", "WEBSOCKET")
        raise PermissionDeniedException(
            f"forbidden: {method} {connection.url.path} needs scope {needed.value}; "
            f"these credentials have {principal.describe_scopes()}"
        )
    if needed is ApiKeyScope.INGEST and "device_id" in connection.path_params:
        require_devices(connection, [connection.path_params["device_id"]])


async def guard_request(request: Request[Any, Any, Any]) -> None:
    """``require_credentials`` for an HTTP request, run from the app's ``before_request`` hook.

    Not as a Litestar guard on HTTP routes: Litestar hands every guard a ``copy()`` of the route handler
    (a 60-attribute object), measured at about a third of the guard's cost per request. The hook runs at the
    same point for the client: after routing, before any parameter, dependency or body is read, inside the
    exception handling (401/403/429 are answered the same way). WebSocket routes keep the Litestar guard
    (``before_request`` does not run for them); ``gateway/app.py`` refuses to start with one that lacks it.
    """
    await require_credentials(request, request.route_handler)


# The name the app wires up before keys became data; kept for callers that import it.
require_api_key = require_credentials


def current_principal(connection: ASGIConnection[Any, Any, Any, Any]) -> Principal | None:
    """The caller the guard authenticated for this connection (None on public routes)."""
    found = connection.scope.get(SCOPE_KEY)
    return found if isinstance(found, Principal) else None


def principal_of(connection: ASGIConnection[Any, Any, Any, Any]) -> str:
    """Who is calling, for created_by / acknowledged_by / resolved_by: a JWT's subject or ``apikey:<id>``."""
    principal = current_principal(connection)
    return "anonymous" if principal is None else principal.subject


def require_devices(connection: ASGIConnection[Any, Any, Any, Any], device_ids: Iterable[str]) -> None:
    """403 unless the caller may write points of every device in ``device_ids``."""
    principal = current_principal(connection)
    if principal is None or not principal.devices:
        return
    refused = sorted(d for d in device_ids if not principal.may_write(d))
    if refused:
        shown = ", ".join(repr(d) for d in refused[:5]) + (" …" if len(refused) > 5 else "")
        raise PermissionDeniedException(f"forbidden: this key may not write points of device {shown}")


def charge_points(connection: ASGIConnection[Any, Any, Any, Any], count: int) -> None:
    """Spend ``count`` from the caller's points-per-second budget, or 429 with Retry-After."""
    principal = current_principal(connection)
    if principal is not None and count:
        authenticator_of(connection).points.charge(principal.limit_key, count)
