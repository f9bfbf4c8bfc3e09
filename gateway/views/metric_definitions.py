"""The metric_definitions read model: list and get."""

from typing import Any

from psycopg_pool import AsyncConnectionPool

from gateway.views.rows import fetch_one, fetch_page
from telemetry_schemas.api.metrics import MetricDefinitionResponse

_COLUMNS = (
    "metric_id, name, description, data_type, metric_type, unit, min_value, max_value, retention_days, "
    "aggregation_interval, tags, metadata, created_at, updated_at, created_by"
)
_GET = f"SELECT {_COLUMNS} FROM telemetry.metric_definitions WHERE name = %s"  # noqa: S608 - constant columns
_LIST = f"""
SELECT {_COLUMNS}, count(*) OVER () AS total FROM telemetry.metric_definitions
WHERE (%(data_type)s::text IS NULL OR data_type = %(data_type)s)
  AND (%(metric_type)s::text IS NULL OR metric_type = %(metric_type)s)
ORDER BY name LIMIT %(limit)s OFFSET %(offset)s
"""  # noqa: S608 - constant columns
_COUNT = """
SELECT count(*) FROM telemetry.metric_definitions
WHERE (%(data_type)s::text IS NULL OR data_type = %(data_type)s)
  AND (%(metric_type)s::text IS NULL OR metric_type = %(metric_type)s)
"""


def _response(row: dict[str, Any]) -> MetricDefinitionResponse:
    row.pop("total", None)
    return MetricDefinitionResponse(**row)


async def get_definition(pool: AsyncConnectionPool, name: str) -> MetricDefinitionResponse | None:
    """One definition by name, or None."""
    row = await fetch_one(pool, _GET, (name,))
    return None if row is None else _response(row)


async def list_definitions(
    pool: AsyncConnectionPool, *, data_type: str | None, metric_type: str | None, limit: int, offset: int
) -> tuple[list[MetricDefinitionResponse], int]:
    """A page of definitions ordered by name, and how many match in all."""
    params = {"data_type": data_type, "metric_type": metric_type, "limit": limit, "offset": offset}
    rows, total = await fetch_page(pool, _LIST, _COUNT, params)
    return [_response(r) for r in rows], total
