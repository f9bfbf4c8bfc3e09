"""create_app(settings): the gateway's composition root."""

from typing import Any

from litestar import Litestar
from litestar.handlers import WebsocketRouteHandler

from gateway.auth.guard import require_credentials
from gateway.deps import dependencies
from gateway.errors import handle_exception
from gateway.lifespan import make_lifespan
from gateway.openapi import DeclaredOrderStructs, document_errors, document_retry_after, openapi_config
from gateway.options import before_every_request
from gateway.request_log import request_logging
from gateway.routes import (
    alert_rules,
    alerts,
    console,
    export,
    health,
    ingest,
    line_protocol,
    metrics,
    observability,
    queries,
    stats,
    stream,
)
from telemetry_core.settings import Settings


def require_socket_guards(handlers: list[Any]) -> None:
    """Fail closed: every WebSocket route must carry the credentials guard (``before_request`` never runs for it)."""
    for handler in handlers:
        if isinstance(handler, WebsocketRouteHandler) and require_credentials not in (handler.guards or ()):
            raise RuntimeError(f"WebSocket route {handler.paths} has no require_credentials guard")


def create_app(settings: Settings) -> Litestar:
    """Build the Litestar app: routes, their dependencies, the auth guard, the error mapping and the lifespan."""
    handlers = [
        *health.ROUTES,
        *ingest.ROUTES,
        *line_protocol.ROUTES,
        *metrics.ROUTES,
        *queries.ROUTES,
        *export.ROUTES,
        *alert_rules.ROUTES,
        *alerts.ROUTES,
        *stream.ROUTES,
        *stats.ROUTES,
        *observability.ROUTES,
    ]
    document_errors(handlers)
    require_socket_guards(handlers)
    built: list[Litestar] = []  # the providers read the app's state; the app exists only after its constructor
    app = Litestar(
        # The web console: public static files, outside the API document (gateway/routes/console.py).
        route_handlers=[*handlers, *console.ROUTES],
        dependencies=dependencies(lambda: built[0].state),
        # HTTP routes: the credentials guard runs in the before_request hook (gateway/auth/guard.py says why);
        # WebSocket routes carry require_credentials as a Litestar guard (checked above).
        middleware=[request_logging],
        before_request=before_every_request,
        exception_handlers={Exception: handle_exception},
        lifespan=[make_lifespan(settings)],  # type: ignore[list-item]
        request_max_body_size=settings.max_body_bytes,
        openapi_config=openapi_config(),
        plugins=[DeclaredOrderStructs()],
        debug=False,
    )
    built.append(app)
    document_retry_after(app)
    return app
