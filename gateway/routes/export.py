"""E7-US1: CSV export, streamed."""

from datetime import datetime
from typing import Annotated, Any

from litestar import Request, get
from litestar.di import NamedDependency
from litestar.params import FromQuery, Parameter
from litestar.response import Stream
from psycopg_pool import AsyncConnectionPool

from gateway.deps import checked_name
from gateway.errors import bad_request, not_found, unprocessable
from gateway.openapi import errors
from gateway.params import EndTime, check_timestamps
from gateway.views.csv_export import any_points, csv_chunks


def _names(values: list[str], what: str) -> list[str]:
    """Accept repeated parameters and comma-separated lists alike."""
    names = [n.strip() for v in values for n in v.split(",") if n.strip()]
    if not names:
        raise bad_request(f"{what}: give at least one, e.g. {what}=a,b")
    return [checked_name(n, what.rstrip("s")) for n in names]


@get("/api/v1/telemetry/export/csv", tags=["export"], responses=errors(404), summary="Export points as CSV (E7-US1)",
     description="Streams `timestamp,device_id,metric_name,value,unit,tags` rows in time order over "
     "[start_time, end_time), in constant memory whatever the size, as an attachment. device_ids and "
     "metric_names are comma-separated or repeated. 404 when nothing matches. JSON values and tags are "
     "JSON-encoded cells.")  # fmt: skip
async def export_csv(
    request: Request[Any, Any, Any],
    pool: NamedDependency[AsyncConnectionPool],
    device_ids: Annotated[list[str], Parameter(min_items=1)],
    metric_names: Annotated[list[str], Parameter(min_items=1)],
    start_time: FromQuery[datetime],
    end_time: EndTime,
) -> Stream:
    """Answer E7-US1."""
    check_timestamps(request, "start_time", "end_time")
    if end_time <= start_time:
        raise unprocessable("end_time: must be after start_time")
    params: dict[str, object] = {
        "devices": _names(device_ids, "device_ids"),
        "metrics": _names(metric_names, "metric_names"),
        "start": start_time,
        "end": end_time,
    }
    if not await any_points(pool, params):
        raise not_found("no data points match these devices, metrics and time range")
    filename = f"telemetry_{start_time:%Y%m%dT%H%M%S}_{end_time:%Y%m%dT%H%M%S}.csv"
    return Stream(
        csv_chunks(pool, params),
        media_type="text/csv",  # Litestar adds "; charset=utf-8" to text/* itself (it was sent twice)
        headers={"Content-Disposition": f'attachment; filename="{filename}"'},
    )


ROUTES = [export_csv]
