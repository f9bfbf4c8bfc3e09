"""E6-US3/US4: /health (for load balancers; no authentication) and /health/detailed (needs a key).

/health says only healthy or not, and which dependency is down, never a driver's error text (which
can name hosts, users and databases). /health/detailed names streams, consumers, counts and pool
sizes, so it needs a key unless the operator sets TELEMETRY_PUBLIC_HEALTH_DETAILS=true.
"""

import asyncio
import os
import time

from litestar import Response, get
from litestar.di import NamedDependency

from gateway.cluster_health import check_cluster
from gateway.health import (
    check_alert_engine,
    check_api_key_cache,
    check_checkpoints,
    check_db,
    check_definitions_cache,
    check_hour_sketches,
    check_load,
    check_nats,
    check_real_time_stream,
    check_workers,
    consumer_lag,
)
from gateway.openapi import errors
from gateway.read_pool import check_read_replica
from gateway.state import GatewayState
from telemetry_core import SERVICE_NAME, __version__
from telemetry_schemas.api.health import ComponentHealth, DetailedHealthResponse, HealthResponse

_OPT = {"public": True}
_DOWN = "NATS or PostgreSQL is down (the body says which)."
_DETAILED_OPT = {"public_when": "public_health_details"}
_NAMES = {"nats": "NATS is unavailable", "db": "PostgreSQL is unavailable"}
_TAGS = ["health"]


@get("/health", opt=_OPT, tags=_TAGS, summary="Health check (E6-US3)",
     responses=errors(503, model=HealthResponse, description=_DOWN),
     description="No authentication. 200 when NATS and PostgreSQL answer, else 503 with a detail naming what is "
     "down (no error text).")  # fmt: skip
async def health(gw: NamedDependency[GatewayState]) -> Response[HealthResponse]:
    """Check NATS and PostgreSQL."""
    nats_ok, db_ok = await asyncio.gather(check_nats(gw), check_db(gw))
    problems = [_NAMES[name] for name, c in (("nats", nats_ok), ("db", db_ok)) if c.status != "healthy"]
    body = HealthResponse(
        status="unhealthy" if problems else "healthy",
        service=SERVICE_NAME,
        port=gw.settings.port,
        version=__version__,
        detail="; ".join(problems) if problems else None,
    )
    return Response(body, status_code=503 if problems else 200)


@get("/health/detailed", opt=_DETAILED_OPT, tags=_TAGS,
     responses=errors(503, model=DetailedHealthResponse, description=_DOWN), summary="Detailed health (E6-US4)",
     description="Needs a key (public only when the operator sets TELEMETRY_PUBLIC_HEALTH_DETAILS=true). "
     "Components data_ingestion (NATS + ingest consumer lag), time_series_db (PostgreSQL), "
     "projections (read-model lag), checkpoints (consumers stopped because their stream was created again or "
     "lost messages under their checkpoint, with the fix; unhealthy while any is, which does not fail the endpoint), "
     "hour_sketches (percentile sketches of hours waiting for the ingest workers' fold: pending, oldest_hour; "
     "`degraded` while an hour over for more than 3 h still has some, which does not fail the endpoint), "
     "alert_engine (heartbeat of each engine partition; unhealthy when none reported "
     "in 10 s, which does not fail the endpoint: storage goes on), "
     "real_time_stream (this copy's open sockets, messages sent and points dropped by slow sockets; "
     "the subscriptions stored), "
     "workers (each worker's heartbeat age; unhealthy 5 s after one stops reporting, which does not fail the "
     "endpoint either), load (status `shedding` and `shedding_load: true` while ingestion answers 503 with "
     "Retry-After because storage is more than TELEMETRY_MAX_INGEST_BACKLOG seconds behind; heavy queries "
     "running and queued; pool use; requests refused for overload by reason), nats_cluster (the NATS servers, "
     "and per stream its leader and its current and lagging replicas; unhealthy while a stream has no leader), "
     "read_replica (status `not_configured` unless DATABASE_READ_URL is set; then `healthy`, `lagging` while "
     "replay is paused or more than 5 s behind, or `unhealthy` when unreachable, which does not fail the endpoint "
     "but makes reads answer 503; metrics replay_lag_bytes (the primary's WAL position minus what the replica "
     "replayed), replay_lag_s (0 when caught up, else seconds since the last replayed commit), replay (pause "
     "state), wal_receiver) "
     "and performance figures. "
     "503 when NATS or PostgreSQL is down.")  # fmt: skip
async def health_detailed(gw: NamedDependency[GatewayState]) -> Response[DetailedHealthResponse]:
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
        # A consumer whose stream was created again or lost its tail stops rather than skip (stream_guard.py).
        "checkpoints": await check_checkpoints(gw),
        # Percentile sketches of hours waiting to be folded by the ingest workers (migration 0023).
        "hour_sketches": await check_hour_sketches(gw.pool),
        # Points are validated against this cache: a stale one would accept or refuse the wrong points.
        "definitions_cache": check_definitions_cache(gw),
        "real_time_stream": await check_real_time_stream(gw),
        # Revocations reach this gateway through this cache: a stalled one keeps accepting revoked keys.
        "api_key_cache": check_api_key_cache(gw),
        # Every worker's heartbeat (its metrics report over NATS, each second): a stopped one is down in 5 s.
        "workers": check_workers(gw),
        # Overload: ingestion shed past the storage backlog, heavy queries queued, pool use (gateway/backlog.py).
        "load": check_load(gw),
        # Servers, and per stream its leader and current / lagging replicas (gateway/cluster_health.py).
        "nats_cluster": await check_cluster(gw) if nats_c.status == "healthy" else nats_c,
        # Where the views read when DATABASE_READ_URL is set: reachable, and how far replay is behind.
        "read_replica": await check_read_replica(gw.pool, gw.read_pool),
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
            # Which gateway copy answered (`telemetry run` starts TELEMETRY_GATEWAY_PROCESSES on one port).
            "gateway_pid": os.getpid(),
            "nats_rtt_ms": nats_c.metrics.get("rtt_ms"),
            "db_latency_ms": db_c.metrics.get("latency_ms"),
        },
        # From the same reading as components.load: the backlog may cross its limit during the awaits above.
        shedding_load=components["load"].status == "shedding",
    )
    return Response(body, status_code=503 if down else 200)


ROUTES = [health, health_detailed]
