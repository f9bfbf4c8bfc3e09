"""The NATS cluster as /health/detailed shows it: servers, and per stream its leader and replicas.

A replicated stream accepts writes while it has a leader (a quorum of its replicas); a replica that is
offline or behind (``current`` false, ``lag`` > 0) is catching up after a restart. On a single server
every stream shows that server as leader and no replicas.
"""

import asyncio
from typing import Any

from gateway.state import GatewayState
from telemetry_core.crash_journal import BUCKET as CRASHES_BUCKET
from telemetry_core.replicas import cluster_size
from telemetry_core.topology import (
    DLQ_STREAM,
    EVENTS_STREAM,
    NOTICES_STREAM,
    PLATFORM_STREAM,
    POINTS_STREAM,
    SUBSCRIPTIONS_BUCKET,
)
from telemetry_schemas.api.health import ComponentHealth

STREAMS = (
    POINTS_STREAM, EVENTS_STREAM, NOTICES_STREAM, DLQ_STREAM, PLATFORM_STREAM, f"KV_{SUBSCRIPTIONS_BUCKET}",
    f"KV_{CRASHES_BUCKET}",  # the consumers' crash journal: without a leader a crash-looping message is not counted
)  # fmt: skip
CHECK_TIMEOUT_S = 1.0


async def _stream_placement(gw: GatewayState, stream: str) -> dict[str, Any]:
    try:
        async with asyncio.timeout(CHECK_TIMEOUT_S):
            info = await gw.js.stream_info(stream)
    except Exception as exc:
        return {"error": repr(exc)}
    cluster = info.cluster
    peers = (cluster.replicas or []) if cluster is not None else []
    replicas = {
        peer.name: {"current": bool(peer.current), "offline": bool(peer.offline), "lag": peer.lag or 0}
        for peer in peers
    }
    return {
        "leader": None if cluster is None else cluster.leader,
        "replicas": info.config.num_replicas or 1,
        "current": sorted(name for name, peer in replicas.items() if peer["current"] and not peer["offline"]),
        "lagging": {name: peer for name, peer in replicas.items() if not peer["current"] or peer["offline"]},
    }


async def check_cluster(gw: GatewayState) -> ComponentHealth:
    """Servers this gateway knows and, per stream, its leader and which replicas are current or lagging.

    Unhealthy while a stream has no leader (its writes answer 503 until an election ends); a lagging
    replica alone is not unhealthy (the quorum still acknowledges), but is listed.
    """
    info: dict[str, Any] = gw.nc._server_info  # nats-py exposes INFO only here
    url = gw.nc.connected_url
    servers = {
        "cluster": info.get("cluster"),
        "size": (known := cluster_size(gw.nc)),
        "connected_to": info.get("server_name"),
        "connected_url": None if url is None else f"{url.hostname}:{url.port}",
        "known": sorted(set(info.get("connect_urls") or ())),
    }
    if not gw.nc.is_connected:
        return ComponentHealth(status="unhealthy", detail="NATS is not connected", metrics={"servers": servers})
    placements = dict(zip(STREAMS, await asyncio.gather(*(_stream_placement(gw, s) for s in STREAMS)), strict=True))
    # The client keeps the INFO of its last connect (a node that was down then is missing from it); a stream's
    # peers, offline ones included, are the members as the cluster itself knows them.
    peers = [1 + len(p["current"]) + len(p["lagging"]) for p in placements.values() if p.get("leader")]
    servers["size"] = max([known, *peers])
    leaderless = [s for s, p in placements.items() if not p.get("leader")]
    metrics = {"servers": servers, "streams": placements}
    if leaderless:
        return ComponentHealth(status="unhealthy", detail=f"no leader for: {', '.join(leaderless)}", metrics=metrics)
    lagging = [s for s, p in placements.items() if p["lagging"]]
    detail = f"replicas catching up on: {', '.join(lagging)}" if lagging else None
    return ComponentHealth(status="healthy", detail=detail, metrics=metrics)
