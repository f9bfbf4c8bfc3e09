"""create_app(settings): the gateway's composition root."""

from litestar import Litestar
from litestar.openapi import OpenAPIConfig
from litestar.openapi.spec import Components, SecurityScheme

from gateway.auth.guard import require_api_key
from gateway.errors import handle_exception
from gateway.lifespan import make_lifespan
from gateway.openapi_docs import document_request_bodies
from gateway.request_log import request_logging
from gateway.routes import alert_rules, alerts, export, health, ingest, metrics, queries
from telemetry_core import __version__
from telemetry_core.settings import Settings


def create_app(settings: Settings) -> Litestar:
    """Build the Litestar app: routes, the auth guard, the error mapping and the lifespan."""
    app = Litestar(
        route_handlers=[
            *health.ROUTES,
            *ingest.ROUTES,
            *metrics.ROUTES,
            *queries.ROUTES,
            *export.ROUTES,
            *alert_rules.ROUTES,
            *alerts.ROUTES,
        ],
        guards=[require_api_key],
        middleware=[request_logging],
        exception_handlers={Exception: handle_exception},
        lifespan=[make_lifespan(settings)],  # type: ignore[list-item]
        request_max_body_size=settings.max_body_bytes,
        openapi_config=OpenAPIConfig(
            title="Telemetry Service",
            version=__version__,
            description="IoT telemetry ingestion and queries. Every endpoint but /health* needs "
            'X-Api-Key: <key> or Authorization: Bearer <key>. Errors are {"detail": "..."}: 400 unreadable '
            "request or over a limit, 401 credentials, 404 not found, 413 body too large, 415 unsupported "
            "Content-Encoding, 422 invalid field (named with its index), 503 NATS or PostgreSQL unavailable.",
            path="/schema",
            components=Components(
                security_schemes={
                    "ApiKey": SecurityScheme(type="apiKey", name="X-Api-Key", security_scheme_in="header"),
                    "Bearer": SecurityScheme(type="http", scheme="bearer"),
                }
            ),
            security=[{"ApiKey": []}, {"Bearer": []}],
        ),
        debug=False,
    )
    document_request_bodies(app)
    return app
