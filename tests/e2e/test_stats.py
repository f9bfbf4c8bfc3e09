"""E6-US1/US2 through the real processes: device and service statistics, exact after overwrites and late points."""

from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import nats
import pytest

from telemetry_core.topology import DEVICE_STATS_PROJECTION, INGEST
from tests.e2e.test_alerts_api import open_alerts, triggered
from tests.support.eventually import eventually
from tests.support.ids import unique
from tests.support.stack import Stack
from tests.support.times import iso

pytestmark = pytest.mark.e2e
NOW = datetime.now(UTC).replace(microsecond=0)


def post(client: httpx.Client, device: str, points: list[dict[str, Any]]) -> None:
    r = client.post(f"/api/v1/telemetry/devices/{device}/telemetry/batch", json={"data_points": points})
    assert r.status_code == 200, r.text
    assert r.json()["ingested_count"] == len(points)


def p(metric: str, ago: timedelta, value: float) -> dict[str, Any]:
    return {"timestamp": iso(NOW - ago), "metric_name": metric, "value": value}


def stats_of(client: httpx.Client, device: str) -> dict[str, Any]:
    r = client.get(f"/api/v1/telemetry/devices/{device}/stats")
    assert r.status_code == 200, r.text
    return r.json()


def wait_points(client: httpx.Client, device: str, count: int) -> dict[str, Any]:
    return eventually(lambda: (s := stats_of(client, device))["data_points_count"] == count and s, timeout=20,
                      what=f"{count} points in the stats of {device}")  # fmt: skip


async def _idle(nats_url: str) -> bool:
    nc = await nats.connect(nats_url)
    try:
        js = nc.jetstream()
        for spec in (INGEST, DEVICE_STATS_PROJECTION):
            info = await js.consumer_info(spec.stream, spec.durable)
            if info.num_pending or info.num_ack_pending:
                return False
        return True
    finally:
        await nc.close()


def test_device_stats_count_an_overwrite_once_and_a_late_point_in_its_hour(client: httpx.Client, stack: Stack) -> None:
    device = unique("dev")
    m = unique("m")
    post(
        client,
        device,
        [p(m, timedelta(minutes=3), 1), p(m, timedelta(minutes=2), 2), p("hum", timedelta(minutes=1), 5)],
    )
    first = wait_points(client, device, 3)
    assert first["last_update"] == iso(NOW - timedelta(minutes=1))
    # The same (metric, timestamp) again: an overwrite, not a new point.
    post(client, device, [p(m, timedelta(minutes=2), 20)])
    # A late point 3 hours back (inside the 24 h) and one 2 days back (outside).
    post(client, device, [p(m, timedelta(hours=3), 7), p(m, timedelta(days=2), 8)])
    stats = wait_points(client, device, 5)
    assert stats == {
        "device_id": device, "total_metrics": 2, "active_metrics": 2, "data_points_count": 5,
        "last_update": iso(NOW - timedelta(minutes=1)), "storage_size": stats["storage_size"],
        "avg_frequency": 4 / 1440, "last_24h_points": 4, "last_24h_alerts": 0,
        "metrics_by_type": {"gauge": 0, "counter": 0, "histogram": 0, "summary": 0, "undefined": 2},
        "top_metrics": [{"name": m, "points": 4}, {"name": "hum", "points": 1}],
    }  # fmt: skip
    assert stats["storage_size"] > 0


def test_device_stats_count_alerts_of_the_last_24_hours(client: httpx.Client, stack: Stack) -> None:
    device = unique("dev")
    now = datetime.now(UTC)
    open_alerts(client, stack, triggered(device, at=now - timedelta(hours=1)), triggered(device, at=now - timedelta(hours=23)),
                triggered(device, at=now - timedelta(hours=25)))  # fmt: skip
    assert stats_of(client, device)["last_24h_alerts"] == 2


def test_unknown_device_gets_zero_stats_not_404(client: httpx.Client) -> None:
    device = unique("nobody")
    assert stats_of(client, device) == {
        "device_id": device, "total_metrics": 0, "active_metrics": 0, "data_points_count": 0, "last_update": None,
        "storage_size": 0, "avg_frequency": 0.0, "last_24h_points": 0, "last_24h_alerts": 0,
        "metrics_by_type": {"gauge": 0, "counter": 0, "histogram": 0, "summary": 0, "undefined": 0},
        "top_metrics": [],
    }  # fmt: skip
    assert client.get("/api/v1/telemetry/devices/bad%20id/stats").status_code == 400


def test_service_stats_move_by_exactly_what_was_stored(client: httpx.Client, stack: Stack) -> None:
    import asyncio

    eventually(lambda: asyncio.run(_idle(stack.servers.nats_url)), timeout=30, what="ingest and stats consumers idle")
    before = client.get("/api/v1/telemetry/stats").json()
    devices = [unique("dev"), unique("dev")]
    post(client, devices[0], [p("svc_a", timedelta(minutes=1), 1), p("svc_a", timedelta(minutes=2), 2)])
    post(client, devices[1], [p("svc_a", timedelta(minutes=1), 1)])
    post(client, devices[1], [p("svc_a", timedelta(minutes=1), 9)])  # overwrite
    wait_points(client, devices[0], 2)
    wait_points(client, devices[1], 1)
    after = eventually(lambda: (s := client.get("/api/v1/telemetry/stats").json())["total_data_points"]
                       == before["total_data_points"] + 3 and s, timeout=20, what="service stats")  # fmt: skip
    assert after["total_devices"] == before["total_devices"] + 2
    assert after["last_24h_points"] == before["last_24h_points"] + 3
    assert after["last_24h_devices"] == before["last_24h_devices"] + 2
    assert len(after["data_by_hour"]) == 24
    assert sum(h["points"] for h in after["data_by_hour"]) == after["last_24h_points"]
    assert after["points_per_second"] > 0 and after["avg_latency"] > 0
    assert set(after) == {
        "total_devices", "active_devices", "total_metrics", "total_data_points", "storage_size", "points_per_second",
        "avg_latency", "error_rate", "last_24h_points", "last_24h_devices", "last_24h_alerts", "devices_by_type",
        "metrics_by_type", "data_by_hour",
    }  # fmt: skip
    assert client.get("/api/v1/telemetry/stats", headers={"X-Api-Key": "wrong"}).status_code == 401


def test_openapi_defines_every_stats_figure(client: httpx.Client) -> None:
    schemas = client.get("/schema/openapi.json").json()["components"]["schemas"]
    for name in ("DeviceStatsResponse", "ServiceStatsResponse"):
        undocumented = [
            f for f, s in schemas[name]["properties"].items() if f != "device_id" and not s.get("description")
        ]
        assert undocumented == [], f"{name}: {undocumented}"
