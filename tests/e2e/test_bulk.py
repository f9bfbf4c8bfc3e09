"""E1-US3: many devices in one request; one failing device never fails the others."""

import httpx
import pytest

from tests.e2e.conftest import point, wait_rows
from tests.support.ids import unique
from tests.support.servers import Servers

pytestmark = pytest.mark.e2e


def test_bulk_reports_per_device_and_stores_the_good(client: httpx.Client, servers: Servers) -> None:
    good, partial = unique("dev"), unique("dev")
    body = {
        good: [point(metric="temp", value=25, ts=f"2025-12-18T10:00:0{i}Z") for i in range(3)],
        partial: [point(metric="temp", value=26), {"metric_name": "temp"}],
        "bad.device": [point()],
        unique("dev"): [point() for _ in range(1001)],
    }
    r = client.post("/api/v1/telemetry/bulk", json=body)
    assert r.status_code == 200
    out = r.json()
    assert (out["total_devices"], out["successful_devices"], out["failed_devices"]) == (4, 1, 3)
    assert (out["ingested_count"], out["total_count"]) == (4, 1007)
    assert out["results"][good]["ingested_count"] == 3
    assert out["results"][partial]["errors"][0]["field"] == f"{partial}[1]"
    assert out["results"]["bad.device"]["detail"].startswith("device_id 'bad.device' is invalid")
    wait_rows(servers, good, 3)
    wait_rows(servers, partial, 1)


def test_bulk_of_10_devices_by_100_points(client: httpx.Client, servers: Servers) -> None:
    devices = [unique("dev") for _ in range(10)]
    body = {d: [point(value=i, ts=f"2025-12-18T10:{i // 60:02d}:{i % 60:02d}Z") for i in range(100)] for d in devices}
    r = client.post("/api/v1/telemetry/bulk", json=body)
    assert (r.status_code, r.json()["success"], r.json()["ingested_count"]) == (200, True, 1000)
    for d in devices:
        wait_rows(servers, d, 100)


def test_bulk_body_must_be_a_mapping(client: httpx.Client) -> None:
    r = client.post("/api/v1/telemetry/bulk", json=[point()])
    assert (r.status_code, r.json()["detail"]) == (422, "body: Expected `object`, got `array`")


def test_a_device_whose_entry_is_not_a_list_of_points_fails_alone(client: httpx.Client, servers: Servers) -> None:
    good, scalar, empty, nested = (unique("dev") for _ in range(4))
    body = {good: [point(value=1)], scalar: "notalist", empty: [], nested: {"points": [point()]}}
    r = client.post("/api/v1/telemetry/bulk", json=body)
    assert r.status_code == 200, r.text
    out = r.json()
    assert (out["total_devices"], out["successful_devices"], out["ingested_count"]) == (4, 1, 1)
    assert out["results"][scalar]["detail"] == (
        f"{scalar}: Expected `array`, got `str` (a device's points are an array of point objects)"
    )
    assert out["results"][nested]["detail"].startswith(f"{nested}: Expected `array`, got `object`")
    assert (out["results"][empty]["success"], out["results"][empty]["detail"]) == (False, f"{empty}: has no points")
    wait_rows(servers, good, 1)


def test_a_bulk_of_only_broken_devices_is_422_naming_each(client: httpx.Client) -> None:
    a, b = unique("dev"), unique("dev")
    r = client.post("/api/v1/telemetry/bulk", json={a: 5, b: []})
    assert r.status_code == 422
    out = r.json()
    assert out["detail"] == "no point stored: 2 of 2 devices failed"
    assert out["results"][a]["detail"].startswith(f"{a}: Expected `array`, got `int`")
