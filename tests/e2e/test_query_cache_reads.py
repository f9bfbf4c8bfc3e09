"""POST /query through the gateway's query cache answers what the database holds, after overwrites and late points.

The session stack's gateway runs with the cache on (the default); its /metrics counters show the cache answered.
Every answer is compared with the same aggregate computed here from telemetry.points.
"""

import re
import threading
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import httpx
import psycopg
import pytest

from tests.e2e.conftest import point
from tests.support.eventually import eventually
from tests.support.ids import unique
from tests.support.servers import Servers
from tests.support.times import iso

pytestmark = pytest.mark.e2e

END = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
START = END - timedelta(hours=6)


def hits(client: httpx.Client) -> float:
    text = client.get("/metrics").text
    found = re.search(r'^telemetry_query_cache_answers_total\{result="hit"\} ([0-9.e+]+)$', text, re.M)
    return float(found.group(1)) if found else 0.0


def asked(client: httpx.Client, device: str, aggregation: str | None = "avg") -> list[tuple[str, float]]:
    body = {"devices": [device], "metrics": ["temperature"], "start_time": iso(START), "end_time": iso(END),
            "aggregation": aggregation, "interval": 3600}  # fmt: skip
    r = client.post("/api/v1/telemetry/query", json=body)
    assert r.status_code == 200, r.text
    return [(p["timestamp"].replace("+00:00", "Z"), p["value"]) for p in r.json()["data_points"]]


def stored(servers: Servers, device: str) -> list[tuple[str, float]]:
    """The hourly averages of the device's points, from the raw table (what the rollups must equal)."""
    with psycopg.connect(servers.database_url) as conn:
        rows = conn.execute(
            "SELECT date_trunc('hour', time), avg(value_num) FROM telemetry.points WHERE device_id = %s "
            "AND metric_name = 'temperature' AND time >= %s AND time < %s GROUP BY 1 ORDER BY 1",
            (device, START, END),
        ).fetchall()
    return [(iso(t.astimezone(UTC)), v) for t, v in rows]


def settled(client: httpx.Client, servers: Servers, device: str, expected: list[tuple[str, float]]) -> None:
    """Wait until the database and the endpoint both hold ``expected``; then every answer is the same."""
    eventually(lambda: stored(servers, device) == expected, timeout=15, what="stored")
    eventually(lambda: asked(client, device) == expected, timeout=15, what=f"/query shows {expected}")
    for _ in range(20):  # never an older answer once the newer one was seen
        assert asked(client, device) == expected


def answered_from_cache(client: httpx.Client, read: Callable[[], object], expected: object, hits_wanted: int) -> None:
    """Repeat ``read`` (each answer must be ``expected``) until the cache answered ``hits_wanted`` of them.

    Polled: a gateway keeps nothing for its first seconds (gateway/query_cache.py, STARTUP_HOLD_S), and a notice
    still on its way drops an answer kept just before.
    """
    before = hits(client)

    def enough() -> bool:
        assert read() == expected
        return hits(client) - before >= hits_wanted

    eventually(enough, timeout=20, what=f"{hits_wanted} answers from the cache")


def test_the_cache_answers_what_the_database_holds_after_overwrites_and_late_points(
    client: httpx.Client, servers: Servers
) -> None:
    device = unique("dev")
    url = f"/api/v1/telemetry/devices/{device}/telemetry"
    hour = START + timedelta(hours=2)
    assert client.post(url, json=point(value=10.0, ts=iso(hour + timedelta(minutes=5)))).status_code == 200
    settled(client, servers, device, [(iso(hour), 10.0)])
    answered_from_cache(client, lambda: asked(client, device), [(iso(hour), 10.0)], 10)
    held = re.search(r'^telemetry_query_cache_held\{what="points"\} ([0-9.e+]+)$', client.get("/metrics").text, re.M)
    assert held is not None and float(held.group(1)) >= 1, "/metrics shows what the cache holds"

    # The same instant again: the later write wins, in the raw table, the rollup and the answer.
    assert client.post(url, json=point(value=20.0, ts=iso(hour + timedelta(minutes=5)))).status_code == 200
    settled(client, servers, device, [(iso(hour), 20.0)])

    # A late point in an earlier hour, then one more in the same hour.
    assert client.post(url, json=point(value=4.0, ts=iso(START + timedelta(minutes=1)))).status_code == 200
    settled(client, servers, device, [(iso(START), 4.0), (iso(hour), 20.0)])
    assert client.post(url, json=point(value=30.0, ts=iso(hour + timedelta(minutes=50)))).status_code == 200
    settled(client, servers, device, [(iso(START), 4.0), (iso(hour), 25.0)])


def test_raw_answers_of_one_series_are_kept_and_dropped_alike(client: httpx.Client, servers: Servers) -> None:
    device = unique("dev")
    url = f"/api/v1/telemetry/devices/{device}/telemetry"
    at = iso(START + timedelta(minutes=30))
    assert client.post(url, json=point(value=1.5, ts=at)).status_code == 200
    eventually(lambda: asked(client, device, None) == [(at, 1.5)], timeout=15, what="the raw point")
    answered_from_cache(client, lambda: asked(client, device, None), [(at, 1.5)], 8)
    assert client.post(url, json=point(value=2.5, ts=at)).status_code == 200
    eventually(lambda: asked(client, device, None) == [(at, 2.5)], timeout=15, what="the overwrite")


def test_one_series_get_reads_are_kept_and_dropped_alike(client: httpx.Client, servers: Servers) -> None:
    """GET /aggregated?device_id=… and GET …/range with an aggregation go through the same cache."""
    device = unique("dev")
    url = f"/api/v1/telemetry/devices/{device}/telemetry"
    hour = END - timedelta(hours=1)
    at = iso(hour + timedelta(minutes=10))

    def aggregated() -> list[tuple[str, float]]:
        params = {"metric_name": "temperature", "aggregation_type": "max", "interval": "3600", "device_id": device,
                  "start_time": iso(START), "end_time": iso(END)}  # fmt: skip
        r = client.get("/api/v1/telemetry/aggregated", params=params)
        assert r.status_code == 200, r.text
        return [(p["timestamp"].replace("+00:00", "Z"), p["value"]) for p in r.json()["data_points"]]

    def ranged() -> list[float]:
        r = client.get(f"/api/v1/telemetry/devices/{device}/metrics/temperature/range",
                       params={"time_range": "24h", "aggregation": "max", "interval": "3600"})  # fmt: skip
        assert r.status_code == 200, r.text
        return [p["value"] for p in r.json()["data_points"]]

    assert client.post(url, json=point(value=1.0, ts=at)).status_code == 200
    eventually(lambda: aggregated() == [(iso(hour), 1.0)] and ranged() == [1.0], timeout=15, what="stored")
    answered_from_cache(client, lambda: (aggregated(), ranged()), ([(iso(hour), 1.0)], [1.0]), 15)
    assert client.post(url, json=point(value=7.0, ts=at)).status_code == 200  # the later write wins
    eventually(lambda: aggregated() == [(iso(hour), 7.0)] and ranged() == [7.0], timeout=15, what="the overwrite")
    for _ in range(10):
        assert aggregated() == [(iso(hour), 7.0)] and ranged() == [7.0]


def test_an_answer_is_never_older_than_the_database_when_the_request_was_sent(
    client: httpx.Client, servers: Servers
) -> None:
    """One instant overwritten with rising values while a reader reads the hourly max from the database, then asks
    the gateway: the answer is at least what the database showed before the request. Without the announcement
    before each commit (ingest_worker/storing.py), an answer kept before a commit was given until its notice came."""
    device = unique("dev")
    url = f"/api/v1/telemetry/devices/{device}/telemetry"
    hour = START + timedelta(hours=3)
    at = iso(hour + timedelta(minutes=7))
    assert client.post(url, json=point(value=0.0, ts=at)).status_code == 200
    settled(client, servers, device, [(iso(hour), 0.0)])
    body = {"devices": [device], "metrics": ["temperature"], "start_time": iso(START), "end_time": iso(END),
            "aggregation": "max", "interval": 3600}  # fmt: skip

    def ask() -> float:
        r = client.post("/api/v1/telemetry/query", json=body)
        assert r.status_code == 200, r.text
        return float(r.json()["data_points"][0]["value"])

    answered_from_cache(client, ask, 0.0, 5)  # the cache keeps answers (past its start-up hold)
    done = threading.Event()

    def write() -> None:
        with httpx.Client(base_url=str(client.base_url), headers=client.headers, timeout=10) as writer:
            for value in range(1, 41):
                assert writer.post(url, json=point(value=float(value), ts=at)).status_code == 200
        done.set()

    reader = psycopg.connect(servers.database_url, autocommit=True)  # one connection: the read takes ~0.3 ms

    def database_max() -> float:
        row = reader.execute(
            "SELECT max FROM telemetry.rollup_hour WHERE device_id = %s AND metric_name = 'temperature' "
            "AND bucket = %s", (device, hour),
        ).fetchone()  # fmt: skip
        assert row is not None
        return float(row[0])

    writer = threading.Thread(target=write)
    writer.start()
    compared = 0
    try:
        while not done.is_set() or compared < 50:
            floor = database_max()
            got = ask()
            assert got >= floor, f"answered {got} after the database showed {floor}"
            compared += 1
    finally:
        writer.join(30)
        reader.close()
    settled(client, servers, device, [(iso(hour), 40.0)])
    answered_from_cache(client, ask, 40.0, 5)
