"""E3-US2 latest value, E3-US3 device metrics, and the raw E3-US1 query."""

import httpx
import pytest

from tests.e2e.conftest import now_iso, point, wait_latest, wait_rows
from tests.support.ids import unique
from tests.support.servers import Servers

pytestmark = pytest.mark.e2e


def latest_url(device: str, metric: str) -> str:
    return f"/api/v1/telemetry/devices/{device}/metrics/{metric}/latest"


def test_latest_is_404_when_there_is_no_data(client: httpx.Client) -> None:
    device = unique("dev")
    r = client.get(latest_url(device, "temperature"))
    assert r.status_code == 404
    assert r.json()["detail"] == (
        f"no data for metric 'temperature' of device '{device}' in the last 24h (use ?lookback= to look further back)"
    )
    assert client.get(f"/api/v1/telemetry/devices/{device}/metrics").json() == []


def test_latest_looks_back_24h_by_default(client: httpx.Client, servers: Servers) -> None:
    device = unique("dev")
    old = "2025-12-18T10:00:00Z"
    assert client.post(f"/api/v1/telemetry/devices/{device}/telemetry", json=point(value=1, ts=old)).status_code == 200
    wait_rows(servers, device, 1)
    assert wait_latest(client, device, "temperature", lookback="3650d")["timestamp"] == old
    assert client.get(latest_url(device, "temperature")).status_code == 404
    r = client.get(latest_url(device, "temperature"), params={"lookback": "soon"})
    assert (r.status_code, r.json()["detail"]) == (
        400,
        "lookback: 'soon' is not a duration; use e.g. 3600, 30m, 24h, 7d or 2w",
    )


def test_latest_is_the_newest_point_whatever_the_arrival_order(client: httpx.Client, servers: Servers) -> None:
    device = unique("dev")
    newer, older = now_iso(-10), now_iso(-20)
    url = f"/api/v1/telemetry/devices/{device}/telemetry/batch"
    assert client.post(url, json={"data_points": [point(value=2, ts=newer)]}).status_code == 200
    wait_latest(client, device, "temperature")
    assert client.post(url, json={"data_points": [point(value=1, ts=older)]}).status_code == 200
    wait_rows(servers, device, 2)
    assert wait_latest(client, device, "temperature")["value"] == 2


def test_device_metrics_lists_unique_names(client: httpx.Client) -> None:
    device = unique("dev")
    points = [point(metric=m, ts=now_iso(-i)) for i, m in enumerate(["b", "a", "b", "c"])]
    client.post(f"/api/v1/telemetry/devices/{device}/telemetry/batch", json={"data_points": points})
    from tests.support.eventually import eventually

    names = eventually(
        lambda: (r := client.get(f"/api/v1/telemetry/devices/{device}/metrics").json()) == ["a", "b", "c"] and r
    )
    assert names == ["a", "b", "c"]


def test_query_returns_raw_points_in_time_order(client: httpx.Client, servers: Servers) -> None:
    d1, d2 = unique("dev"), unique("dev")
    for d, offset in ((d1, 0), (d2, 1)):
        pts = [
            point(metric="temp", value=offset + 10 * i, ts=f"2025-12-17T0{i}:00:0{offset}Z", tags={"room": f"r{i % 2}"})
            for i in range(4)
        ] + [point(metric="hum", value=50, ts="2025-12-17T01:30:00Z")]
        client.post(f"/api/v1/telemetry/devices/{d}/telemetry/batch", json={"data_points": pts})
        wait_rows(servers, d, 5)
    q = {
        "metrics": ["temp"],
        "devices": [d1, d2],
        "start_time": "2025-12-17T01:00:00Z",
        "end_time": "2025-12-17T03:00:00Z",
    }
    body = client.post("/api/v1/telemetry/query", json=q).json()
    assert (body["device_id"], body["metric_name"], body["count"]) == ("multiple", "temp", 4)
    assert [(p["device_id"], p["value"]) for p in body["data_points"]] == [(d1, 10), (d2, 11), (d1, 20), (d2, 21)]
    assert body["data_points"][0] == {
        "timestamp": "2025-12-17T01:00:00Z", "device_id": d1, "metric_name": "temp", "value": 10,
        "unit": None, "tags": {"room": "r1"}, "metadata": {},
    }  # fmt: skip
    one = client.post("/api/v1/telemetry/query", json={**q, "devices": [d1], "metrics": ["temp", "hum"]}).json()
    assert (one["device_id"], one["metric_name"]) == (d1, "multiple")
    assert [p["metric_name"] for p in one["data_points"]] == ["temp", "hum", "temp"]
    paged = client.post("/api/v1/telemetry/query", json={**q, "limit": 2, "offset": 1}).json()
    assert [p["value"] for p in paged["data_points"]] == [11, 20]
    tagged = client.post("/api/v1/telemetry/query", json={**q, "filters": {"room": "r0"}}).json()
    assert [p["value"] for p in tagged["data_points"]] == [20, 21]
    empty = client.post("/api/v1/telemetry/query", json={**q, "metrics": ["nothing"]})
    assert (empty.status_code, empty.json()["data_points"], empty.json()["count"]) == (200, [], 0)


@pytest.mark.parametrize(
    ("change", "status", "detail"),
    [
        ({"end_time": "2025-12-16T00:00:00Z"}, 422, "end_time: must be after start_time"),
        ({"limit": 10001}, 422, "limit: Expected `int` <= 10000"),
        ({"metrics": []}, 422, "metrics: Expected `array` of length >= 1"),
        ({"aggregation": "mode"}, 422, "aggregation: Invalid enum value 'mode'"),
    ],
)
def test_bad_queries_say_what_is_wrong(client: httpx.Client, change: dict, status: int, detail: str) -> None:
    q = {"metrics": ["t"], "start_time": "2025-12-17T00:00:00Z", "end_time": "2025-12-18T00:00:00Z", **change}
    r = client.post("/api/v1/telemetry/query", json=q)
    assert r.status_code == status
    assert r.json()["detail"].startswith(detail)
