"""E2: metric definitions, event-sourced. Writes go through the command handler; reads come from the read model."""

from typing import Annotated

from litestar import Response, delete, get, post
from litestar.di import NamedDependency
from litestar.params import FromQuery, JSONBody, Parameter
from psycopg_pool import AsyncConnectionPool

from gateway.commands.aggregate import CommandContext
from gateway.commands.metric_definitions import MetricDefinitionCommands
from gateway.deps import checked_name
from gateway.errors import not_found
from gateway.openapi import errors
from gateway.params import Identifier
from gateway.state import GatewayState
from gateway.typed_body import JsonBody
from gateway.views.metric_definitions import get_definition, list_definitions
from telemetry_schemas.api.metrics import (
    MetricDefinitionList,
    MetricDefinitionRequest,
    MetricDefinitionResponse,
    MetricDeletedResponse,
)
from telemetry_schemas.enums import DataType, MetricType
from telemetry_schemas.events import MetricDefined
from telemetry_schemas.fields import MAX_OFFSET

_TAGS = ["metrics"]


def _as_response(event: MetricDefined) -> MetricDefinitionResponse:
    fields = {f: getattr(event, f) for f in MetricDefinitionResponse.__struct_fields__ if hasattr(event, f)}
    return MetricDefinitionResponse(updated_at=event.created_at, **fields)


@post("/api/v1/telemetry/metrics", status_code=201, tags=_TAGS, summary="Create a metric definition (E2-US1)",
      dto=JsonBody[MetricDefinitionRequest], return_dto=None,
      description="201 with the definition and its metric_id; 409 when the name is taken (also when two "
      "gateways race: exactly one wins); 422 with the field at fault. Returns once the definition is readable "
      "and enforced at ingestion.")  # fmt: skip
async def create_metric(
    data: JSONBody[MetricDefinitionRequest],
    metric_commands: NamedDependency[MetricDefinitionCommands],
    ctx: NamedDependency[CommandContext],
) -> MetricDefinitionResponse:
    """Define a metric name (once)."""
    return _as_response(await metric_commands.create(data, ctx))


@get("/api/v1/telemetry/metrics", tags=_TAGS, summary="List metric definitions (E2-US2)",
     description="Ordered by name. `count` is the number on this page, `total` the number matching.")  # fmt: skip
async def list_metrics(
    pool: NamedDependency[AsyncConnectionPool],
    data_type: FromQuery[DataType | None] = None,
    metric_type: FromQuery[MetricType | None] = None,
    limit: Annotated[int, Parameter(ge=1, le=1000)] = 100,
    offset: Annotated[int, Parameter(ge=0, le=MAX_OFFSET)] = 0,
) -> MetricDefinitionList:
    """Read a page of the read model."""
    metrics, total = await list_definitions(
        pool,
        data_type=data_type.value if data_type else None,
        metric_type=metric_type.value if metric_type else None,
        limit=limit,
        offset=offset,
    )
    filters = {k: v.value for k, v in (("data_type", data_type), ("metric_type", metric_type)) if v is not None}
    return MetricDefinitionList(
        metrics=metrics, count=len(metrics), total=total, limit=limit, offset=offset, filters=filters
    )


@get(
    "/api/v1/telemetry/metrics/{metric_name:str}",
    tags=_TAGS,
    responses=errors(404),
    summary="Get a metric definition (E2-US3)",
)
async def get_metric(metric_name: Identifier, gw: NamedDependency[GatewayState]) -> MetricDefinitionResponse:
    """Read one definition; 404 when absent."""
    checked_name(metric_name, "metric_name")
    # Served from the gateway's in-memory cache (complete since start-up, and every create/delete here
    # waits for it), so a read costs no database round trip. Definitions are never updated in place.
    cached = gw.definitions.get(metric_name)
    if cached is not None:
        return _as_response(cached)
    # Not cached: absent, or defined through another gateway a moment ago. The read model decides.
    found = await get_definition(gw.read_pool, metric_name)
    if found is None:
        raise not_found(f"metric definition {metric_name!r} not found")
    return found


@delete("/api/v1/telemetry/metrics/{metric_name:str}", status_code=200, tags=_TAGS, responses=errors(404),
        summary="Delete a metric definition (E2-US4)",
        description="Data points of the metric are kept. 404 when there is no such definition.")  # fmt: skip
async def delete_metric(
    metric_name: Identifier,
    metric_commands: NamedDependency[MetricDefinitionCommands],
    ctx: NamedDependency[CommandContext],
) -> Response[MetricDeletedResponse]:
    """Delete the definition, conditional on it being the current state."""
    checked_name(metric_name, "metric_name")
    event = await metric_commands.delete(metric_name, ctx)
    body = MetricDeletedResponse(
        success=True,
        message=f"Metric definition {metric_name!r} deleted; its data points are kept",
        name=metric_name,
        metric_id=event.metric_id,
    )
    return Response(body, status_code=200)


ROUTES = [create_metric, list_metrics, get_metric, delete_metric]
