"""E1-US1: one point in, readable back as the latest value."""

import json

import httpx
import pytest

from tests.e2e.conftest import point, wait_latest
from tests.support.ids import unique
from tests.support.stack import Stack

pytestmark = pytest.mark.e2e


def test_single_point_is_acknowledged_then_readable(client: httpx.Client) -> None:
    device = unique("dev")
    body = point(value=25.5, unit="celsius", tags={"location": "room_1"}, metadata={"fw": "1.2"})
    r = client.post(f"/api/v1/telemetry/devices/{device}/telemetry", json=body)
    assert r.status_code == 200
    assert r.json() == {
        "success": True,
        "message": "Data point ingested successfully",
        "device_id": device,
        "metric_name": "temperature",
    }
    latest = wait_latest(client, device, "temperature")
    assert latest == {
        "device_id": device,
        "metric_name": "temperature",
        "value": 25.5,
        "unit": "celsius",
        "timestamp": body["timestamp"],
        "tags": {"location": "room_1"},
        "metadata": {"fw": "1.2"},
    }


def test_a_json_array_value_is_stored_and_read_back_as_an_array(client: httpx.Client) -> None:
    # FR: "numeric, string, boolean, and JSON value types": an array is a JSON document like an object.
    device = unique("dev")
    body = point(metric="spectrum", value=[1, 2.5, "peak", {"band": 3}, [4], True, None])
    r = client.post(f"/api/v1/telemetry/devices/{device}/telemetry", json=body)
    assert r.status_code == 200, r.text
    assert wait_latest(client, device, "spectrum")["value"] == [1, 2.5, "peak", {"band": 3}, [4], True, None]
    r = client.post("/api/v1/telemetry/query", json={"devices": [device], "metrics": ["spectrum"],
                    "start_time": "2000-01-02T00:00:00Z", "end_time": "2099-01-01T00:00:00Z"})  # fmt: skip
    assert r.status_code == 200, r.text
    assert [p["value"] for p in r.json()["data_points"]] == [[1, 2.5, "peak", {"band": 3}, [4], True, None]]


@pytest.mark.parametrize(
    ("body", "detail"),
    [
        ({"metric_name": "t", "value": 1}, "body: Object missing required field `timestamp`"),
        (point(value=None), "value: Expected `bool | int | float | str | object | array`, got `null`"),
        (point(metric="bad.name"), "metric_name: Expected `str` matching regex"),
        (point(ts="2025-12-18T10:00:00"), "timestamp: Expected `datetime` with a timezone component"),
        (point(value={"lat": 100, "lon": 0}), "value.lat: latitude must be between -90 and 90"),
    ],
)
def test_invalid_point_is_422_naming_the_field(client: httpx.Client, body: dict, detail: str) -> None:
    r = client.post(f"/api/v1/telemetry/devices/{unique('dev')}/telemetry", json=body)
    assert r.status_code == 422
    assert r.json()["detail"].startswith(detail)


def test_unreadable_requests_are_400(client: httpx.Client) -> None:
    url = f"/api/v1/telemetry/devices/{unique('dev')}/telemetry"
    r = client.post(url, content=b"{not json")
    assert (r.status_code, r.json()["detail"][:25]) == (400, "body is not valid JSON: J")
    r = client.post("/api/v1/telemetry/devices/bad.device/telemetry", json=point())
    assert r.status_code == 400
    assert r.json()["detail"] == "device_id 'bad.device' is invalid: use 1-128 characters from A-Z a-z 0-9 _ - :"


def test_every_endpoint_but_health_needs_a_key(stack: Stack) -> None:
    url = f"{stack.url}/api/v1/telemetry/devices/d1/telemetry"
    assert httpx.post(url, json=point()).status_code == 401
    r = httpx.post(url, json=point(), headers={"X-Api-Key": "wrong"})
    assert (r.status_code, r.json()) == (401, {"detail": "invalid API key"})
    assert httpx.post(url, json=point(), headers={"Authorization": f"Bearer {stack.api_key}"}).status_code == 200
    assert httpx.get(f"{stack.url}/api/v1/telemetry/devices/d1/metrics").status_code == 401
    assert httpx.get(f"{stack.url}/health").json()["status"] == "healthy"


def test_failed_requests_are_logged_with_their_request_id(stack: Stack) -> None:
    from tests.support.eventually import eventually

    rid = unique("req")
    httpx.get(f"{stack.url}/api/v1/telemetry/devices/d1/metrics", headers={"X-Request-Id": rid})
    line = eventually(
        lambda: next((ln for ln in stack.log_tail("gateway", 400).splitlines() if rid in ln), None), timeout=10
    )
    record = json.loads(line)
    assert (record["event"], record["status"], record["path"]) == (
        "request",
        401,
        "/api/v1/telemetry/devices/d1/metrics",
    )
