"""Metric definition commands: a name is defined once (until deleted); deleting keeps the data points."""

import secrets
from datetime import UTC, datetime

from gateway.commands.aggregate import Aggregate, CommandContext, Current
from gateway.errors import conflict, not_found, unprocessable
from gateway.integration_events import IntegrationEvents
from telemetry_schemas.api.metrics import MetricDefinitionRequest
from telemetry_schemas.enums import DataType
from telemetry_schemas.events import MetricDefined, MetricDeleted, MetricEvent

# The read model a write waits for (with the gateway's definitions cache, which validates points).
PROJECTION = "metric_definitions"


def check_bounds(body: MetricDefinitionRequest) -> None:
    """422 unless min/max are on a numeric metric and in order."""
    bounded = body.min_value is not None or body.max_value is not None
    if bounded and body.data_type is not DataType.NUMERIC:
        raise unprocessable(f"min_value/max_value: only numeric metrics have bounds, not {body.data_type.value}")
    if body.min_value is not None and body.max_value is not None and body.min_value > body.max_value:
        raise unprocessable(f"min_value: {body.min_value} is greater than max_value {body.max_value}")


def define(body: MetricDefinitionRequest, current: Current[MetricEvent], ctx: CommandContext) -> MetricDefined:
    """metric.defined, unless the name is defined already (409)."""
    if isinstance(current.last, MetricDefined):
        raise conflict(f"metric {body.name!r} already exists (metric_id {current.last.metric_id})")
    return MetricDefined(
        metric_id="met_" + secrets.token_hex(8),
        created_at=datetime.now(UTC),
        created_by=ctx.principal,
        **{f: getattr(body, f) for f in body.__struct_fields__},
    )


def delete(name: str, current: Current[MetricEvent], ctx: CommandContext) -> MetricDeleted:
    """metric.deleted, when the name is defined now (else 404)."""
    if not isinstance(current.last, MetricDefined):
        raise not_found(f"metric definition {name!r} not found")
    return MetricDeleted(
        metric_id=current.last.metric_id, name=name, deleted_at=datetime.now(UTC), deleted_by=ctx.principal
    )


class MetricDefinitionCommands:
    """Create and delete metric definitions on ``telemetry.events.metric.<name>``."""

    def __init__(self, metrics: Aggregate[MetricEvent], announce: IntegrationEvents) -> None:
        self._metrics = metrics
        self._announce = announce

    async def create(self, body: MetricDefinitionRequest, ctx: CommandContext) -> MetricDefined:
        """Define ``body.name``; returns once the definition is readable and enforced at ingestion."""
        check_bounds(body)  # before any round trip
        current = await self._metrics.current(body.name)
        event = define(body, current, ctx)
        await self._metrics.append(
            body.name,
            event,
            current.seq,
            ctx,
            on_conflict=f"metric {body.name!r} already exists (created concurrently)",
        )
        await self._announce.announce("metric.defined", event)
        return event

    async def delete(self, name: str, ctx: CommandContext) -> MetricDeleted:
        """Delete the definition of ``name`` (404 when there is none)."""
        current = await self._metrics.current(name)
        event = delete(name, current, ctx)
        await self._metrics.append(
            name, event, current.seq, ctx, on_conflict=f"metric definition {name!r} changed concurrently; retry"
        )
        await self._announce.announce("metric.deleted", event)
        return event
