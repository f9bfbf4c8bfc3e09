"""Request bodies in the OpenAPI document.

Ingestion handlers read the raw body themselves (one msgspec decode, per-point partial success), so
Litestar cannot infer their request schema; it is declared here from the same msgspec types.
"""

from typing import Any

import msgspec
from litestar import Litestar
from litestar.openapi.spec import OpenAPIMediaType, Reference, RequestBody

from telemetry_schemas.api.alerts import BacktestRequest, EnableRequest, NoteRequest
from telemetry_schemas.api.errors import ErrorResponse
from telemetry_schemas.api.metrics import MetricDefinitionRequest
from telemetry_schemas.api.queries import QueryRequest
from telemetry_schemas.fields import BatchId, DeviceId
from telemetry_schemas.rules import RuleSpec
from telemetry_schemas.values import Point


class BatchBody(msgspec.Struct, kw_only=True):
    """E1-US2 body: 1..1000 points; each is validated alone."""

    data_points: list[Point]
    batch_id: BatchId | None = None
    compression: str | None = None


BulkBody = dict[DeviceId, list[Point]]

_BODIES: dict[tuple[str, str], tuple[str, str]] = {
    ("/api/v1/telemetry/devices/{device_id}/telemetry", "post"): ("Point", "One point"),
    ("/api/v1/telemetry/devices/{device_id}/telemetry/batch", "post"): ("BatchBody", "Up to 1000 points"),
    ("/api/v1/telemetry/bulk", "post"): ("BulkBody", "device_id → points (≤ 1000 each, ≤ 10,000 in all)"),
    ("/api/v1/telemetry/query", "post"): ("QueryRequest", "Raw query over [start_time, end_time)"),
    ("/api/v1/telemetry/metrics", "post"): ("MetricDefinitionRequest", "A metric definition"),
    ("/api/v1/telemetry/alerts/rules", "post"): ("RuleSpec", "An alert rule"),
    ("/api/v1/telemetry/alerts/rules/{rule_id}", "put"): ("RuleSpec", "The whole alert rule"),
    ("/api/v1/telemetry/alerts/rules/{rule_id}/enable", "put"): ("EnableRequest", "Enable or disable"),
    ("/api/v1/telemetry/alerts/rules/backtest", "post"): ("BacktestRequest", "A rule and a past range"),
    ("/api/v1/telemetry/alerts/{alert_id}/acknowledge", "put"): ("NoteRequest", "An optional note"),
    ("/api/v1/telemetry/alerts/{alert_id}/resolve", "put"): ("NoteRequest", "An optional note"),
}
# Bodies that may be left out entirely.
_OPTIONAL = {
    ("/api/v1/telemetry/alerts/{alert_id}/acknowledge", "put"),
    ("/api/v1/telemetry/alerts/{alert_id}/resolve", "put"),
}


def _components() -> dict[str, Any]:
    (_, components) = msgspec.json.schema_components(
        [
            Point,
            BatchBody,
            QueryRequest,
            MetricDefinitionRequest,
            ErrorResponse,
            RuleSpec,
            EnableRequest,
            NoteRequest,
            BacktestRequest,
        ],
        ref_template="#/components/schemas/{name}",
    )
    components["BulkBody"] = {
        "type": "object",
        "description": "Map of device id to that device's points",
        "additionalProperties": {"type": "array", "items": {"$ref": "#/components/schemas/Point"}},
    }
    return components


def document_request_bodies(app: Litestar) -> None:
    """Add the request-body schemas to the app's generated OpenAPI document."""
    schema = app.openapi_schema
    assert schema.components is not None
    schemas: dict[str, Any] = dict(schema.components.schemas or {})
    schemas.update(_components())
    schema.components.schemas = schemas
    for (path, method), (name, description) in _BODIES.items():
        item = (schema.paths or {}).get(path)
        operation = getattr(item, method, None) if item is not None else None
        if operation is None:
            continue
        operation.request_body = RequestBody(
            content={"application/json": OpenAPIMediaType(schema=Reference(ref=f"#/components/schemas/{name}"))},
            description=description + ". Content-Encoding gzip, zstd or lz4 accepted.",
            required=(path, method) not in _OPTIONAL,
        )
