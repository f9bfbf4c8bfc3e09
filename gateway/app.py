"""create_app(settings): the gateway's composition root."""

from litestar import Litestar

from gateway.auth.guard import require_credentials
from gateway.deps import DEPENDENCIES
from gateway.errors import handle_exception
from gateway.lifespan import make_lifespan
from gateway.openapi import DeclaredOrderStructs, document_errors, document_retry_after, openapi_config
from gateway.options import allow_every_method
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
    app = Litestar(
        # The web console: public static files, outside the API document (gateway/routes/console.py).
        route_handlers=[*handlers, *console.ROUTES],
        dependencies=DEPENDENCIES,
        guards=[require_credentials],
        middleware=[request_logging],
        before_request=allow_every_method,
        exception_handlers={Exception: handle_exception},
        lifespan=[make_lifespan(settings)],  # type: ignore[list-item]
        request_max_body_size=settings.max_body_bytes,
        openapi_config=openapi_config(),
        plugins=[DeclaredOrderStructs()],
        debug=False,
    )
    document_retry_after(app)
    return app
