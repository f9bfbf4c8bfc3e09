"""E6-US1/US2: device and service statistics, read from the stats read model (see views/stats.py)."""

from litestar import get
from litestar.di import NamedDependency
from litestar.params import FromPath
from psycopg_pool import AsyncConnectionPool

from gateway.deps import checked_name
from gateway.views.stats import device_stats, service_stats
from telemetry_schemas.api.stats import DeviceStatsResponse, ServiceStatsResponse

_TAGS = ["statistics"]


@get("/api/v1/telemetry/devices/{device_id:str}/stats", tags=_TAGS, summary="Device statistics (E6-US1)",
     description="Kept by the device_stats projection, so the figures trail ingestion by the projection's lag. "
     "A device with no data gets zeros, not 404. Each field's description says how it is computed.")  # fmt: skip
async def get_device_stats(device_id: FromPath[str], pool: NamedDependency[AsyncConnectionPool]) -> DeviceStatsResponse:
    """Read the device's row set of the stats read model."""
    return await device_stats(pool, checked_name(device_id, "device_id"))


@get("/api/v1/telemetry/stats", tags=_TAGS, summary="Service statistics (E6-US2)",
     description="Kept by the device_stats and dead_letter_stats projections. Zeros when nothing is stored. "
     "Each field's description says how it is computed.")  # fmt: skip
async def get_service_stats(pool: NamedDependency[AsyncConnectionPool]) -> ServiceStatsResponse:
    """Read the service-wide figures of the stats read model."""
    return await service_stats(pool)


ROUTES = [get_device_stats, get_service_stats]
