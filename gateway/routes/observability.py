"""GET /metrics: Prometheus text format, the gateway's figures and every live worker's (gateway/metrics.py)."""

from litestar import Response, get
from prometheus_client import CONTENT_TYPE_LATEST

from gateway.metrics import exposition, refresh_stream_figures
from gateway.state import GatewayState


@get("/metrics", tags=["observability"], summary="Prometheus metrics", include_in_schema=True,
     description="Prometheus text format (0.0.4). Needs the API key like every endpoint but /health*: configure "
     "Prometheus with `authorization: {credentials: <key>}` (sent as Bearer). Gateway figures (requests by route "
     "and status, latency histograms, points accepted/rejected, publish latency, consumer pending, projection lag, "
     "DLQ counts, worker heartbeat ages) and the figures each worker reports over NATS every second, labelled "
     "process and instance (alert evaluations and state changes, points written, dead letters, batch "
     "latency).")  # fmt: skip
async def metrics(gw: GatewayState) -> Response[bytes]:
    """Refresh the JetStream figures, then render everything."""
    await refresh_stream_figures(gw.js)
    return Response(exposition(gw.reports), media_type=CONTENT_TYPE_LATEST)


ROUTES = [metrics]
