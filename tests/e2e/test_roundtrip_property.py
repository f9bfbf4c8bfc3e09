"""Property: any valid point round-trips through ingest → latest unchanged."""

import httpx
import pytest
from hypothesis import HealthCheck, given, settings

from tests.e2e.conftest import wait_latest
from tests.support.ids import unique
from tests.support.strategies import points

pytestmark = pytest.mark.e2e


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(p=points())
def test_any_valid_point_round_trips(client: httpx.Client, p: dict) -> None:
    device = unique("dev")
    body = {**p, "timestamp": p["timestamp"].isoformat()}
    r = client.post(f"/api/v1/telemetry/devices/{device}/telemetry", json=body)
    assert r.status_code == 200, r.text
    latest = wait_latest(client, device, p["metric_name"], lookback="36500d")
    from datetime import datetime

    assert datetime.fromisoformat(latest["timestamp"]) == p["timestamp"]
    assert latest["value"] == p["value"]
    assert type(latest["value"]) is type(p["value"])
    assert latest["unit"] == p.get("unit")
    assert latest["tags"] == p.get("tags", {})
    assert latest["metadata"] == p.get("metadata", {})
