"""GET /metrics: Prometheus text format, the gateway's figures and every live worker's (gateway/metrics.py)."""

from litestar import Response, get
from litestar.di import NamedDependency
from prometheus_client import CONTENT_TYPE_LATEST

from gateway.metrics import QUERY_CACHE_HELD, exposition, refresh_stream_figures
from gateway.state import GatewayState

# Litestar adds "; charset=utf-8" to text/* itself: without this, the header carried it twice.
_MEDIA = "; ".join(p.strip() for p in CONTENT_TYPE_LATEST.split(";") if not p.strip().startswith("charset"))


@get("/metrics", tags=["observability"], summary="Prometheus metrics", include_in_schema=True, media_type=_MEDIA,
     description="Prometheus text format. Needs the API key like every endpoint but /health*: configure "
     "Prometheus with `authorization: {credentials: <key>}` (sent as Bearer). Gateway figures (requests by route "
     "and status, latency histograms, points accepted/rejected, publish latency, consumer pending, projection lag, "
     "DLQ counts, worker heartbeat ages) and the figures each worker reports over NATS every second, labelled "
     "process and instance (alert evaluations and state changes, points written, dead letters, batch "
     "latency).")  # fmt: skip
async def metrics(gw: NamedDependency[GatewayState]) -> Response[bytes]:
    """Refresh the JetStream figures, then render everything."""
    await refresh_stream_figures(gw.js)
    if gw.query_reads is not None:
        QUERY_CACHE_HELD.labels("answers").set(len(gw.query_reads.cache))
        QUERY_CACHE_HELD.labels("points").set(gw.query_reads.cache.points)
    return Response(exposition(gw.reports), media_type=_MEDIA)


ROUTES = [metrics]
