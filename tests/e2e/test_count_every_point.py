"""`count` counts every point of a series, whatever its value's type, from every source (E3-US1 AC4).

The rollups hold numeric points only; a count adds the series' other points (migration 0021's partial indexes).
Before, a boolean or string series counted to no buckets at all, and a mixed one to its numeric points only.
"""

from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from tests.e2e.conftest import wait_rows
from tests.support.eventually import eventually
from tests.support.ids import unique
from tests.support.servers import Servers
from tests.support.times import iso

pytestmark = pytest.mark.e2e
T0 = datetime(2025, 12, 18, tzinfo=UTC)
END = T0 + timedelta(hours=2)


def send(client: httpx.Client, device: str, metric: str, points: list[tuple[int, Any]]) -> None:
    body = {"data_points": [{"timestamp": iso(T0 + timedelta(seconds=s)), "metric_name": metric, "value": v}
                            for s, v in points]}  # fmt: skip
    r = client.post(f"/api/v1/telemetry/devices/{device}/telemetry/batch", json=body)
    assert r.status_code == 200 and r.json()["ingested_count"] == len(points), r.text


def post_query(client: httpx.Client, devices: list[str] | None, metric: str, agg: str, interval: int,
               start: datetime = T0, end: datetime = END) -> dict:  # fmt: skip
    body: dict[str, Any] = {"metrics": [metric], "start_time": iso(start), "end_time": iso(end),
                            "aggregation": agg, "interval": interval}  # fmt: skip
    if devices is not None:
        body["devices"] = devices
    r = client.post("/api/v1/telemetry/query", json=body)
    assert r.status_code == 200, r.text
    return r.json()


# Seconds from T0 → value: numbers, booleans, strings, a JSON object and a geolocation in both hours.
FIRST: list[tuple[int, Any]] = [
    (0, 1.5), (60, 2), (120, True), (180, "open"), (240, {"a": 1}), (300, {"lat": 1.0, "lon": 2.0}),
    (3600, 3.0), (3660, False), (3720, "closed"), (3780, 4.5), (3840, True),
]  # fmt: skip
# Later writes win: a number becomes a string, a boolean a number, a string a boolean; one new late point.
LATER: list[tuple[int, Any]] = [(0, "was a number"), (120, 7.0), (3720, True), (90, False)]


def final_state() -> dict[int, Any]:
    state: dict[int, Any] = {}
    for s, v in FIRST + LATER:
        state[s] = v
    return state


def per_hour(state: dict[int, Any], numeric: bool = False) -> list[list[Any]]:
    def keep(v: Any) -> bool:
        return not numeric or (isinstance(v, int | float) and not isinstance(v, bool))

    return [[v for s, v in sorted(state.items()) if 3600 * h <= s < 3600 * (h + 1) and keep(v)] for h in range(2)]


@pytest.fixture(scope="module")
def mixed(stack, servers: Servers) -> tuple[str, str, str]:
    """Two devices of one metric of its own: the mixed series, and a second device with two points of its own."""
    device, other, metric = unique("cnt"), unique("cnt"), unique("mixed")
    with httpx.Client(base_url=stack.url, headers=stack.headers) as client:
        send(client, device, metric, FIRST)
        send(client, other, metric, [(30, "x"), (3630, 9.0)])
        wait_rows(servers, device, len(FIRST))
        send(client, device, metric, LATER)
    wait_rows(servers, device, len(final_state()))
    wait_rows(servers, other, 2)
    return device, other, metric


def counts(answer: dict) -> list[tuple[str, float]]:
    return [(p["timestamp"][11:19], p["value"]) for p in answer["data_points"]]


@pytest.mark.parametrize(("interval", "start", "source"), [
    (3600, T0, "rollup_hour"),
    (3600, T0 - timedelta(seconds=0.5), "raw"),  # unaligned: raw points, the buckets start half a second early
])  # fmt: skip
def test_a_mixed_series_counts_every_point_of_the_final_state(
    client: httpx.Client, mixed: tuple[str, str, str], interval: int, start: datetime, source: str
) -> None:
    device, _, metric = mixed
    want = [len(h) for h in per_hour(final_state())]  # 7 and 5: overwrites replace, the late point adds
    assert want == [7, 5]

    def answer() -> dict:
        return post_query(client, [device], metric, "count", interval, start, start + timedelta(hours=2))

    eventually(lambda: [v for _, v in counts(answer())] == want, timeout=15, what=f"counts from {source}")
    assert answer()["source"] == source


def test_minute_buckets_count_every_point(client: httpx.Client, mixed: tuple[str, str, str]) -> None:
    device, _, metric = mixed
    state = final_state()
    want = {}
    for s in state:
        minute = iso(T0 + timedelta(seconds=s - s % 60))[11:19]
        want[minute] = want.get(minute, 0) + 1
    answer = eventually(lambda: (a := post_query(client, [device], metric, "count", 60)) and dict(counts(a)) == want
                        and a, timeout=15, what="minute counts")  # fmt: skip
    assert answer["source"] == "rollup_minute"


def test_other_aggregations_still_read_numeric_points_only(client: httpx.Client, mixed: tuple[str, str, str]) -> None:
    device, _, metric = mixed
    numeric = per_hour(final_state(), numeric=True)  # [[2, 7.0], [3.0, 4.5]]
    avg = post_query(client, [device], metric, "avg", 3600)
    assert [p["value"] for p in avg["data_points"]] == pytest.approx([sum(h) / len(h) for h in numeric])
    total = post_query(client, [device], metric, "sum", 3600)
    assert [p["value"] for p in total["data_points"]] == pytest.approx([sum(h) for h in numeric])


def test_named_devices_and_every_device_count_every_point(client: httpx.Client, mixed: tuple[str, str, str]) -> None:
    device, other, metric = mixed
    mine = [len(h) for h in per_hour(final_state())]
    both = post_query(client, [device, other], metric, "count", 3600)
    assert sorted((p["device_id"], p["value"]) for p in both["data_points"]) == sorted(
        [(device, mine[0]), (device, mine[1]), (other, 1.0), (other, 1.0)]
    )
    params = {"metric_name": metric, "aggregation_type": "count", "interval": 3600, "start_time": iso(T0),
              "end_time": iso(END)}  # fmt: skip

    def across() -> dict:
        r = client.get("/api/v1/telemetry/aggregated", params=params)
        assert r.status_code == 200, r.text
        return r.json()

    # Across devices the hours come from the per-metric hourly rollup (a projection: eventually) plus raw.
    want = [mine[0] + 1, mine[1] + 1]
    answer = eventually(lambda: (a := across()) and [p["value"] for p in a["data_points"]] == want and a,
                        timeout=15, what="the count across devices")  # fmt: skip
    assert [p["count"] for p in answer["data_points"]] == want
    assert answer["source"] == "rollup_hour"


def test_a_boolean_series_counts_its_points(client: httpx.Client, servers: Servers) -> None:
    device, metric = unique("door"), unique("door_open")
    send(client, device, metric, [(s, s % 120 == 0) for s in range(0, 7200, 60)])
    wait_rows(servers, device, 120)
    for interval, source in ((3600, "rollup_hour"), (1800, "rollup_minute"), (90, "raw")):
        answer = post_query(client, [device], metric, "count", interval)
        assert answer["source"] == source
        assert sum(p["value"] for p in answer["data_points"]) == 120, (interval, answer)
    # Nothing numeric to average: avg still answers no buckets.
    assert post_query(client, [device], metric, "avg", 3600)["data_points"] == []
