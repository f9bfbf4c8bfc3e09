"""E2: metric definitions, event-sourced. Writes publish events; reads come from the read model."""

import secrets
from datetime import UTC, datetime
from typing import Annotated, Any

import msgspec
import structlog
from litestar import Request, Response, delete, get, post
from litestar.params import Parameter

from gateway.auth.guard import principal_of
from gateway.body import decode, read_body
from gateway.deps import checked_name, request_id, state_of
from gateway.errors import conflict, not_found, unprocessable
from gateway.publisher import SequenceConflictError
from gateway.state import GatewayState
from gateway.views.metric_definitions import get_definition, list_definitions, wait_applied
from telemetry_core.topology import EVENTS_STREAM, metric_subject
from telemetry_schemas.api.metrics import (
    MetricDefinitionList,
    MetricDefinitionRequest,
    MetricDefinitionResponse,
    MetricDeletedResponse,
)
from telemetry_schemas.codecs import json_encoder, metric_event_decoder
from telemetry_schemas.enums import DataType, MetricType
from telemetry_schemas.events import MetricDefined, MetricDeleted

PROJECTION = "metric_definitions"
# How long a write waits for its own event to show in the read model (read-your-writes).
VISIBLE_WITHIN_S = 5.0
_decoder = msgspec.json.Decoder(MetricDefinitionRequest)
_TAGS = ["metrics"]
log = structlog.get_logger()


def _validate(body: MetricDefinitionRequest) -> None:
    bounded = body.min_value is not None or body.max_value is not None
    if bounded and body.data_type is not DataType.NUMERIC:
        raise unprocessable(f"min_value/max_value: only numeric metrics have bounds, not {body.data_type.value}")
    if body.min_value is not None and body.max_value is not None and body.min_value > body.max_value:
        raise unprocessable(f"min_value: {body.min_value} is greater than max_value {body.max_value}")


async def _current(gw: GatewayState, name: str) -> tuple[int, MetricDefined | MetricDeleted | None]:
    """(last sequence on the metric's subject, its last event): the definition's true current state."""
    last = await gw.publisher.last_on_subject(EVENTS_STREAM, metric_subject(name))
    if last is None:
        return 0, None
    seq, data = last
    return seq, metric_event_decoder.decode(data)


async def _make_visible(gw: GatewayState, seq: int) -> None:
    applied = await wait_applied(gw.pool, PROJECTION, EVENTS_STREAM, seq, VISIBLE_WITHIN_S)
    cached = await gw.definitions.wait_for(seq, VISIBLE_WITHIN_S)
    if not (applied and cached):
        # The event is durable; the read model is only slow (projection worker down?). Say so in the log.
        log.warning("write_not_yet_visible", seq=seq, read_model=applied, validation_cache=cached)


async def _publish_integration_event(gw: GatewayState, name: str, payload: bytes) -> None:
    try:
        await gw.nc.publish(f"{gw.settings.event_prefix}.{name}", payload)
    except Exception as exc:  # best effort (NFR-005)
        log.warning("integration_event_failed", integration_event=name, error=repr(exc))


@post("/api/v1/telemetry/metrics", status_code=201, tags=_TAGS, summary="Create a metric definition (E2-US1)",
      description="201 with the definition and its metric_id; 409 when the name is taken (also when two "
      "gateways race: exactly one wins); 422 with the field at fault. Returns once the definition is readable "
      "and enforced at ingestion.")  # fmt: skip
async def create_metric(request: Request[Any, Any, Any]) -> MetricDefinitionResponse:
    """Publish metric.defined with an expected last subject sequence, so a name is defined once."""
    gw = state_of(request)
    body = decode(await read_body(request, gw.settings.max_body_bytes), _decoder)
    _validate(body)
    seq, last = await _current(gw, body.name)
    if isinstance(last, MetricDefined):
        raise conflict(f"metric {body.name!r} already exists (metric_id {last.metric_id})")
    event = MetricDefined(
        metric_id="met_" + secrets.token_hex(8),
        created_at=datetime.now(UTC),
        created_by=principal_of(request),
        **{f: getattr(body, f) for f in body.__struct_fields__},
    )
    try:
        new_seq = await gw.publisher.publish_event(metric_subject(body.name), event, seq, request_id(request))
    except SequenceConflictError:
        raise conflict(f"metric {body.name!r} already exists (created concurrently)") from None
    await _make_visible(gw, new_seq)
    payload = json_encoder.encode(event)
    await _publish_integration_event(gw, "metric.defined", payload)
    return _as_response(event)


def _as_response(event: MetricDefined) -> MetricDefinitionResponse:
    fields = {f: getattr(event, f) for f in MetricDefinitionResponse.__struct_fields__ if hasattr(event, f)}
    return MetricDefinitionResponse(updated_at=event.created_at, **fields)


@get("/api/v1/telemetry/metrics", tags=_TAGS, summary="List metric definitions (E2-US2)",
     description="Ordered by name. `count` is the number on this page, `total` the number matching.")  # fmt: skip
async def list_metrics(
    request: Request[Any, Any, Any],
    data_type: DataType | None = None,
    metric_type: MetricType | None = None,
    limit: Annotated[int, Parameter(ge=1, le=1000)] = 100,
    offset: Annotated[int, Parameter(ge=0)] = 0,
) -> MetricDefinitionList:
    """Read a page of the read model."""
    metrics, total = await list_definitions(
        state_of(request).pool,
        data_type=data_type.value if data_type else None,
        metric_type=metric_type.value if metric_type else None,
        limit=limit,
        offset=offset,
    )
    filters = {k: v.value for k, v in (("data_type", data_type), ("metric_type", metric_type)) if v is not None}
    return MetricDefinitionList(
        metrics=metrics, count=len(metrics), total=total, limit=limit, offset=offset, filters=filters
    )


@get("/api/v1/telemetry/metrics/{metric_name:str}", tags=_TAGS, summary="Get a metric definition (E2-US3)")
async def get_metric(metric_name: str, request: Request[Any, Any, Any]) -> MetricDefinitionResponse:
    """Read one definition; 404 when absent."""
    checked_name(metric_name, "metric_name")
    # Served from the gateway's in-memory cache (complete since start-up, and every create/delete here
    # waits for it), so a read costs no database round trip. Definitions are never updated in place.
    gw = state_of(request)
    cached = gw.definitions.get(metric_name)
    if cached is not None:
        return _as_response(cached)
    # Not cached: absent, or defined through another gateway a moment ago. The read model decides.
    found = await get_definition(gw.pool, metric_name)
    if found is None:
        raise not_found(f"metric definition {metric_name!r} not found")
    return found


@delete("/api/v1/telemetry/metrics/{metric_name:str}", status_code=200, tags=_TAGS,
        summary="Delete a metric definition (E2-US4)",
        description="Data points of the metric are kept. 404 when there is no such definition.")  # fmt: skip
async def delete_metric(metric_name: str, request: Request[Any, Any, Any]) -> Response[MetricDeletedResponse]:
    """Publish metric.deleted, conditional on the definition being the current state."""
    gw = state_of(request)
    checked_name(metric_name, "metric_name")
    seq, last = await _current(gw, metric_name)
    if not isinstance(last, MetricDefined):
        raise not_found(f"metric definition {metric_name!r} not found")
    event = MetricDeleted(
        metric_id=last.metric_id, name=metric_name, deleted_at=datetime.now(UTC), deleted_by=principal_of(request)
    )
    try:
        new_seq = await gw.publisher.publish_event(metric_subject(metric_name), event, seq, request_id(request))
    except SequenceConflictError:
        raise conflict(f"metric definition {metric_name!r} changed concurrently; retry") from None
    await _make_visible(gw, new_seq)
    await _publish_integration_event(gw, "metric.deleted", json_encoder.encode(event))
    body = MetricDeletedResponse(
        success=True,
        message=f"Metric definition {metric_name!r} deleted; its data points are kept",
        name=metric_name,
        metric_id=last.metric_id,
    )
    return Response(body, status_code=200)


ROUTES = [create_metric, list_metrics, get_metric, delete_metric]
