"""E6-US3/US4: /health (for load balancers) and /health/detailed; no authentication."""

import asyncio
import time

from litestar import Response, get

from gateway.health import (
    check_alert_engine,
    check_db,
    check_definitions_cache,
    check_nats,
    check_workers,
    consumer_lag,
)
from gateway.state import GatewayState
from telemetry_core import SERVICE_NAME, __version__
from telemetry_schemas.api.health import ComponentHealth, DetailedHealthResponse, HealthResponse

_OPT = {"public": True}
_TAGS = ["health"]


@get("/health", opt=_OPT, tags=_TAGS, summary="Health check (E6-US3)",
     description="200 when NATS and PostgreSQL answer, else 503 with a detail naming what is down.")  # fmt: skip
async def health(gw: GatewayState) -> Response[HealthResponse]:
    """Check NATS and PostgreSQL."""
    nats_ok, db_ok = await asyncio.gather(check_nats(gw), check_db(gw))
    problems = [c.detail for c in (nats_ok, db_ok) if c.status != "healthy" and c.detail]
    body = HealthResponse(
        status="unhealthy" if problems else "healthy",
        service=SERVICE_NAME,
        port=gw.settings.port,
        version=__version__,
        detail="; ".join(problems) if problems else None,
    )
    return Response(body, status_code=503 if problems else 200)


@get("/health/detailed", opt=_OPT, tags=_TAGS, summary="Detailed health (E6-US4)",
     description="Components data_ingestion (NATS + ingest consumer lag), time_series_db (PostgreSQL), "
     "projections (read-model lag), alert_engine (heartbeat of each engine partition; unhealthy when none reported "
     "in 10 s, which does not fail the endpoint: storage goes on), real_time_stream (not deployed in this release), "
     "workers (each worker's heartbeat age; unhealthy 5 s after one stops reporting, which does not fail the "
     "endpoint either) and performance figures. 503 when NATS or PostgreSQL is down.")  # fmt: skip
async def health_detailed(gw: GatewayState) -> Response[DetailedHealthResponse]:
    """Check every component and report consumer lag."""
    nats_c, db_c = await asyncio.gather(check_nats(gw), check_db(gw))
    lags = await consumer_lag(gw) if nats_c.status == "healthy" else {}
    ingest_lag = lags.get("ingest", {})
    ingestion = ComponentHealth(status=nats_c.status, detail=nats_c.detail, metrics={"consumer": ingest_lag})
    projections = ComponentHealth(
        status=nats_c.status, metrics={name: lag for name, lag in lags.items() if name != "ingest"}
    )
    components = {
        "data_ingestion": ingestion,
        "time_series_db": db_c,
        "projections": projections,
        "alert_engine": await check_alert_engine(gw),
        # Points are validated against this cache: a stale one would accept or refuse the wrong points.
        "definitions_cache": check_definitions_cache(gw),
        # Every worker's heartbeat (its metrics report over NATS, each second): a stopped one is down in 5 s.
        "workers": check_workers(gw),
        "real_time_stream": ComponentHealth(status="not_deployed", detail="streaming is not part of this release"),
    }
    down = nats_c.status != "healthy" or db_c.status != "healthy"
    body = DetailedHealthResponse(
        status="unhealthy" if down else "healthy",
        service=SERVICE_NAME,
        port=gw.settings.port,
        version=__version__,
        components=components,
        performance={
            "uptime_s": round(time.monotonic() - gw.started_at, 1),
            "nats_rtt_ms": nats_c.metrics.get("rtt_ms"),
            "db_latency_ms": db_c.metrics.get("latency_ms"),
        },
    )
    return Response(body, status_code=503 if down else 200)


ROUTES = [health, health_detailed]
