"""E7-US1: CSV export streams any size in bounded memory."""

import csv
import io
from datetime import UTC, datetime, timedelta

import httpx
import psutil
import pytest

from tests.e2e.conftest import wait_rows
from tests.support.ids import unique
from tests.support.servers import Servers
from tests.support.stack import Stack
from tests.support.times import iso

pytestmark = pytest.mark.e2e
T0 = datetime(2025, 11, 1, tzinfo=UTC)
URL = "/api/v1/telemetry/export/csv"


def test_export_has_header_rows_and_attachment(client: httpx.Client, servers: Servers) -> None:
    device = unique("csv")
    points = [
        {"timestamp": iso(T0), "metric_name": "t", "value": 21.5, "unit": "celsius", "tags": {"room": "a,b"}},
        {"timestamp": iso(T0 + timedelta(seconds=1)), "metric_name": "t", "value": "on"},
        {"timestamp": iso(T0 + timedelta(seconds=2)), "metric_name": "loc", "value": {"lat": 1.5, "lon": 2}},
        {"timestamp": iso(T0 + timedelta(seconds=3)), "metric_name": "t", "value": True},
    ]
    client.post(f"/api/v1/telemetry/devices/{device}/telemetry/batch", json={"data_points": points})
    wait_rows(servers, device, 4)
    params = {
        "device_ids": device,
        "metric_names": "t,loc",
        "start_time": iso(T0),
        "end_time": iso(T0 + timedelta(hours=1)),
    }
    r = client.get(URL, params=params)
    assert r.status_code == 200
    assert r.headers["content-type"] == "text/csv; charset=utf-8"  # once (it was sent twice)
    assert r.headers["content-disposition"] == 'attachment; filename="telemetry_20251101T000000_20251101T010000.csv"'
    assert list(csv.reader(io.StringIO(r.text))) == [
        ["timestamp", "device_id", "metric_name", "value", "unit", "tags"],
        ["2025-11-01T00:00:00+00:00", device, "t", "21.5", "celsius", '{"room":"a,b"}'],
        ["2025-11-01T00:00:01+00:00", device, "t", "on", "", "{}"],
        ["2025-11-01T00:00:02+00:00", device, "loc", '{"lat":1.5,"lon":2}', "", "{}"],
        ["2025-11-01T00:00:03+00:00", device, "t", "true", "", "{}"],
    ]


def test_export_404_and_bad_requests(client: httpx.Client) -> None:
    params = {
        "device_ids": unique("none"),
        "metric_names": "t",
        "start_time": iso(T0),
        "end_time": iso(T0 + timedelta(hours=1)),
    }
    r = client.get(URL, params=params)
    assert (r.status_code, r.json()["detail"]) == (404, "no data points match these devices, metrics and time range")
    r = client.get(URL, params={**params, "end_time": iso(T0 - timedelta(hours=1))})
    assert (r.status_code, r.json()["detail"]) == (422, "end_time: must be after start_time")
    r = client.get(URL, params={k: v for k, v in params.items() if k != "metric_names"})
    assert (r.status_code, r.json()["detail"]) == (422, "metric_names: required query parameter is missing")


@pytest.mark.slow
def test_200k_points_stream_in_bounded_memory(stack: Stack, servers: Servers) -> None:
    device = unique("big")
    with httpx.Client(base_url=stack.url, headers=stack.headers, timeout=60) as client:
        for b in range(200):
            points = [{"timestamp": iso(T0 + timedelta(seconds=b * 1000 + i)), "metric_name": "v", "value": b * 1000 + i}
                      for i in range(1000)]  # fmt: skip
            assert (
                client.post(
                    f"/api/v1/telemetry/devices/{device}/telemetry/batch", json={"data_points": points}
                ).status_code
                == 200
            )
        wait_rows(servers, device, 200_000, timeout=120)
        gateway = psutil.Process(stack.procs["gateway"].pid)
        before = gateway.memory_info().rss
        peak, rows, size = before, 0, 0
        params = {
            "device_ids": device,
            "metric_names": "v",
            "start_time": iso(T0),
            "end_time": iso(T0 + timedelta(days=30)),
        }
        with client.stream("GET", URL, params=params) as r:
            assert r.status_code == 200
            assert "content-length" not in r.headers  # streamed, not buffered
            tail = b""
            for chunk in r.iter_bytes():
                size += len(chunk)
                rows += chunk.count(b"\n")
                tail = (tail + chunk)[-200:]
                peak = max(peak, gateway.memory_info().rss)
    assert rows == 200_001
    assert tail.endswith(f"{device},v,199999,,{{}}\n".encode())
    # The whole CSV is ~{size} bytes; buffering it (or its rows as Python objects) would grow RSS by far more.
    assert peak - before < 40 * 1024 * 1024, (peak - before, size)
