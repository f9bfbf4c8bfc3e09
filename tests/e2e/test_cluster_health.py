"""/health/detailed's nats_cluster on a single server: one server, every stream led by it, one replica each."""

import httpx
import pytest

from telemetry_core.topology import EVENTS_STREAM, POINTS_STREAM

pytestmark = pytest.mark.e2e


def test_a_single_server_shows_itself_as_every_leader(client: httpx.Client) -> None:
    r = client.get("/health/detailed")
    assert r.status_code == 200, r.text
    cluster = r.json()["components"]["nats_cluster"]
    assert cluster["status"] == "healthy", cluster
    assert cluster["metrics"]["servers"]["size"] == 1
    assert cluster["metrics"]["servers"]["cluster"] is None
    streams = cluster["metrics"]["streams"]
    assert {POINTS_STREAM, EVENTS_STREAM, "KV_SUBSCRIPTIONS", "KV_CONSUMER_CRASHES"} <= set(streams)
    for placement in streams.values():
        assert placement["replicas"] == 1 and placement["current"] == [] and placement["lagging"] == {}
        assert placement["leader"], placement  # a single server leads every stream
