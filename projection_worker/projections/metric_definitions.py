"""Read model: current metric definitions (E2), from metric.defined / metric.deleted events."""

from typing import Any, assert_never

from psycopg import AsyncCursor
from psycopg.types.json import Json, Jsonb

from telemetry_core.topology import METRIC_DEFINITIONS_PROJECTION, ConsumerSpec
from telemetry_schemas.codecs import metric_event_decoder
from telemetry_schemas.events import MetricDefined, MetricDeleted, MetricEvent

NAME = "metric_definitions"
SPEC: ConsumerSpec = METRIC_DEFINITIONS_PROJECTION
TABLES: tuple[str, ...] = ("telemetry.metric_definitions",)

_DEFINE = """
INSERT INTO telemetry.metric_definitions (name, metric_id, description, data_type, metric_type, unit, min_value,
    max_value, retention_days, aggregation_interval, tags, metadata, created_at, updated_at, created_by)
VALUES (%(name)s, %(metric_id)s, %(description)s, %(data_type)s, %(metric_type)s, %(unit)s, %(min_value)s,
    %(max_value)s, %(retention_days)s, %(aggregation_interval)s, %(tags)s, %(metadata)s, %(created_at)s,
    %(created_at)s, %(created_by)s)
ON CONFLICT (name) DO UPDATE SET metric_id = EXCLUDED.metric_id, description = EXCLUDED.description,
    data_type = EXCLUDED.data_type, metric_type = EXCLUDED.metric_type, unit = EXCLUDED.unit,
    min_value = EXCLUDED.min_value, max_value = EXCLUDED.max_value, retention_days = EXCLUDED.retention_days,
    aggregation_interval = EXCLUDED.aggregation_interval, tags = EXCLUDED.tags, metadata = EXCLUDED.metadata,
    created_at = EXCLUDED.created_at, updated_at = EXCLUDED.updated_at, created_by = EXCLUDED.created_by
"""
# A delete removes the definition only if it is the one the event names (a newer one may exist).
_DELETE = "DELETE FROM telemetry.metric_definitions WHERE name = %s AND metric_id = %s"


def decode(data: bytes) -> MetricEvent:
    """Decode a domain event."""
    return metric_event_decoder.decode(data)


async def apply(cur: AsyncCursor[Any], messages: list[MetricEvent]) -> None:
    """Apply events in stream order."""
    for event in messages:
        match event:
            case MetricDefined():
                await cur.execute(
                    _DEFINE,
                    {
                        "name": event.name,
                        "metric_id": event.metric_id,
                        "description": event.description,
                        "data_type": event.data_type.value,
                        "metric_type": event.metric_type.value,
                        "unit": event.unit,
                        "min_value": event.min_value,
                        "max_value": event.max_value,
                        "retention_days": event.retention_days,
                        "aggregation_interval": event.aggregation_interval,
                        "tags": Jsonb(event.tags),
                        "metadata": Json(event.metadata),
                        "created_at": event.created_at,
                        "created_by": event.created_by,
                    },
                )
            case MetricDeleted():
                await cur.execute(_DELETE, (event.name, event.metric_id))
            case _:
                assert_never(event)
