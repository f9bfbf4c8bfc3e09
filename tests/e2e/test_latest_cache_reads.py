"""/latest through the gateway's latest-value cache answers what latest_values holds, after overwrites and late points.

The session stack's gateway runs with the cache on (the default); its /metrics counters show the cache answered.
"""

import re

import httpx
import psycopg
import pytest

from tests.e2e.conftest import now_iso, point, wait_rows
from tests.support.eventually import eventually
from tests.support.ids import unique
from tests.support.servers import Servers

pytestmark = pytest.mark.e2e


def counter(client: httpx.Client, name: str, result: str) -> float:
    text = client.get("/metrics").text
    found = re.search(rf'^{name}_total\{{result="{result}"\}} ([0-9.e+]+)$', text, re.M)
    return float(found.group(1)) if found else 0.0


def hits(client: httpx.Client) -> float:
    return counter(client, "telemetry_latest_cache_answers", "hit")


def database_latest(servers: Servers, device: str) -> tuple[str, float] | None:
    with psycopg.connect(servers.database_url) as conn:
        row = conn.execute(
            "SELECT to_char(time AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US'), value_num "
            "FROM telemetry.latest_values WHERE device_id = %s AND metric_name = 'temperature'",
            (device,),
        ).fetchone()
    return None if row is None else (row[0], row[1])


def answered(client: httpx.Client, device: str, **params: str) -> tuple[str, float] | None:
    r = client.get(f"/api/v1/telemetry/devices/{device}/metrics/temperature/latest", params=params)
    assert r.status_code in (200, 404), r.text
    if r.status_code == 404:
        return None
    body = r.json()
    at = body["timestamp"].replace("Z", "").replace("+00:00", "")
    return (at if "." in at else at + ".000000", body["value"])


def settled(client: httpx.Client, servers: Servers, device: str, value: float) -> tuple[str, float]:
    """Wait until both the database and the endpoint hold ``value``; then every read agrees with the database."""
    eventually(lambda: (database_latest(servers, device) or ("", None))[1] == value, timeout=15, what="projected")
    expected = database_latest(servers, device)
    assert expected is not None
    eventually(lambda: answered(client, device) == expected, timeout=15, what=f"/latest shows {value}")
    for _ in range(20):  # never an older value once the newer one was seen
        assert answered(client, device) == expected
    return expected


def test_the_cache_answers_what_latest_values_holds_after_overwrites_and_late_points(
    client: httpx.Client, servers: Servers
) -> None:
    device = unique("dev")
    url = f"/api/v1/telemetry/devices/{device}/telemetry"
    at = now_iso(-60)
    before = hits(client)
    assert client.post(url, json=point(value=1.0, ts=at)).status_code == 200
    settled(client, servers, device, 1.0)
    assert hits(client) - before >= 15, "the cache answered the repeated reads"

    assert client.post(url, json=point(value=2.0, ts=at)).status_code == 200  # same instant: the later write wins
    settled(client, servers, device, 2.0)

    assert client.post(url, json=point(value=3.0, ts=now_iso(-120))).status_code == 200  # a late point
    wait_rows(servers, device, 2)
    assert client.post(url, json=point(value=4.0, ts=now_iso(-90))).status_code == 200  # another, behind the newest
    wait_rows(servers, device, 3)
    assert settled(client, servers, device, 2.0)[1] == 2.0

    assert client.post(url, json=point(value=5.0, ts=now_iso(-30))).status_code == 200  # newer
    settled(client, servers, device, 5.0)


def test_the_look_back_applies_to_a_cached_row(client: httpx.Client, servers: Servers) -> None:
    device = unique("dev")
    url = f"/api/v1/telemetry/devices/{device}/telemetry"
    assert client.post(url, json=point(value=7.0, ts=now_iso(-7200))).status_code == 200
    expected = settled(client, servers, device, 7.0)  # cached through 24 h look-back reads
    assert answered(client, device, lookback="1h") is None
    assert answered(client, device, lookback="3h") == expected


def first_read(client: httpx.Client, servers: Servers, value: float) -> tuple[int, int]:
    """A new device's point, projected and then prefilled; its first /latest: (hits, misses) it added."""
    device = unique("dev")
    kept = counter(client, "telemetry_latest_cache_prefills", "kept")
    assert client.post(f"/api/v1/telemetry/devices/{device}/telemetry", json=point(value=value)).status_code == 200
    eventually(lambda: database_latest(servers, device) is not None, timeout=15, what="projected")
    eventually(lambda: counter(client, "telemetry_latest_cache_prefills", "kept") > kept, timeout=15, what="prefilled")
    before = (hits(client), counter(client, "telemetry_latest_cache_answers", "miss"))
    expected = database_latest(servers, device)
    assert answered(client, device) == expected and expected is not None and expected[1] == value
    after = (hits(client), counter(client, "telemetry_latest_cache_answers", "miss"))
    return int(after[0] - before[0]), int(after[1] - before[1])


def test_a_series_announced_by_its_notice_is_a_hit_at_its_first_read(client: httpx.Client, servers: Servers) -> None:
    """The prefill (gateway/latest_prefill.py) reads a new series before anyone asks: no miss for the first read.

    The stack is shared: the prefill counter may rise for another test's series before this one's round. So up to
    three new series; with the prefill off every first read misses and the test fails.
    """
    seen = []
    for value in (6.5, 7.5, 8.5):
        seen.append(first_read(client, servers, value))
        if seen[-1] == (1, 0):
            return
    raise AssertionError(f"no first read was a hit (hits, misses added per series): {seen}")
