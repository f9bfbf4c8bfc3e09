"""Aggregated queries: exact answers for known inputs, from every source; rollups equal raw after overwrites."""

import math
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.e2e.conftest import wait_rows
from tests.support.eventually import eventually
from tests.support.ids import unique
from tests.support.servers import Servers
from tests.support.times import iso

pytestmark = pytest.mark.e2e
T0 = datetime(2025, 12, 17, tzinfo=UTC)
ALL = ["avg", "min", "max", "sum", "count", "median", "p95", "p99"]


def ingest(client: httpx.Client, device: str, values: list[tuple[datetime, float]], metric: str = "m") -> None:
    points = [{"timestamp": iso(t), "metric_name": metric, "value": v} for t, v in values]
    r = client.post(f"/api/v1/telemetry/devices/{device}/telemetry/batch", json={"data_points": points})
    assert r.status_code == 200, r.text


def query(client: httpx.Client, devices: list[str], agg: str, interval: int, start: datetime = T0,
          end: datetime = T0 + timedelta(hours=2), metric: str = "m") -> dict:  # fmt: skip
    body = {"devices": devices, "metrics": [metric], "start_time": iso(start), "end_time": iso(end),
            "aggregation": agg, "interval": interval}  # fmt: skip
    r = client.post("/api/v1/telemetry/query", json=body)
    assert r.status_code == 200, r.text
    return r.json()


def values_of(answer: dict) -> list:
    return [(p["timestamp"], p["device_id"], p["value"]) for p in answer["data_points"]]


@pytest.fixture(scope="module")
def two_devices(stack, servers: Servers) -> tuple[str, str]:
    a, b = unique("agg"), unique("agg")
    with httpx.Client(base_url=stack.url, headers=stack.headers) as client:
        # Every 10 minutes for 2 hours: values 0..11 on a, 100..111 on b; 01:00:00 opens the second hour.
        ingest(client, a, [(T0 + timedelta(minutes=10 * k), k) for k in range(12)])
        ingest(client, b, [(T0 + timedelta(minutes=10 * k), 100 + k) for k in range(12)])
    wait_rows(servers, a, 12)
    wait_rows(servers, b, 12)
    return a, b


EXPECTED_A = {  # per hour bucket of device a: values 0..5 and 6..11
    "avg": [2.5, 8.5], "min": [0, 6], "max": [5, 11], "sum": [15, 51], "count": [6, 6],
    # nearest rank ceil(q * n): median is the 3rd of 6, p95 and p99 the 6th
    "median": [2, 8], "p95": [5, 11], "p99": [5, 11],
}  # fmt: skip


@pytest.mark.parametrize("agg", ALL)
@pytest.mark.parametrize("source", ["rollup_hour", "rollup_minute", "raw"])
def test_known_inputs_give_exact_answers(
    client: httpx.Client, two_devices: tuple[str, str], agg: str, source: str
) -> None:
    a, _ = two_devices
    # The same two buckets from each source: an hour-aligned range reads hours; ending at 01:59 reads
    # minutes; starting 30 s early (buckets T0-30s and T0+59m30s hold the same points) reads raw points.
    end = T0 + timedelta(hours=1, minutes=59) if source == "rollup_minute" else T0 + timedelta(hours=2)
    start = T0 - timedelta(seconds=30) if source == "raw" else T0
    answer = eventually(lambda: (r := query(client, [a], agg, 3600, start=start, end=end))["data_points"] and r)
    assert answer["source"] == source
    got = [p["value"] for p in answer["data_points"]]
    if agg in ("median", "p95", "p99") and source != "raw":
        assert answer["relative_error"] == pytest.approx(0.0099, abs=1e-4)
        for g, want in zip(got, EXPECTED_A[agg], strict=True):
            assert abs(g - want) <= answer["relative_error"] * abs(want) + 1e-9
    else:
        assert answer["relative_error"] is None
        assert got == pytest.approx(EXPECTED_A[agg])
    assert [p["timestamp"] for p in answer["data_points"]] == [iso(start), iso(start + timedelta(hours=1))]


def test_tag_filters_read_raw_points(client: httpx.Client, two_devices: tuple[str, str]) -> None:
    a, _ = two_devices
    body = {"devices": [a], "metrics": ["m"], "start_time": iso(T0), "end_time": iso(T0 + timedelta(hours=2)),
            "aggregation": "count", "interval": 3600, "filters": {"site": "x"}}  # fmt: skip
    answer = client.post("/api/v1/telemetry/query", json=body).json()
    assert (answer["source"], answer["data_points"]) == ("raw", [])  # rollups carry no tags


def test_multi_device_series_and_across_devices(client: httpx.Client, two_devices: tuple[str, str]) -> None:
    a, b = two_devices
    answer = eventually(lambda: (r := query(client, [a, b], "max", 3600)) and len(r["data_points"]) == 4 and r)
    first, second = iso(T0), iso(T0 + timedelta(hours=1))
    assert values_of(answer) == sorted([(first, a, 5), (first, b, 105), (second, a, 11), (second, b, 111)])
    assert sorted((s["device_id"], len(s["data_points"])) for s in answer["series"]) == sorted([(a, 2), (b, 2)])
    assert (answer["device_id"], answer["metric_name"], answer["aggregation"]) == ("multiple", "m", "max")
    params = {"metric_name": "m", "aggregation_type": "count", "interval": 3600, "start_time": iso(T0),
              "end_time": iso(T0 + timedelta(hours=2)), "device_id": a}  # fmt: skip
    one = client.get("/api/v1/telemetry/aggregated", params=params).json()
    assert [(p["value"], p["count"]) for p in one["data_points"]] == [(6, 6), (6, 6)]
    assert (one["device_id"], one["source"]) == (a, "rollup_hour")


def test_bucket_edges_are_half_open(client: httpx.Client, two_devices: tuple[str, str]) -> None:
    a, _ = two_devices
    # [00:00, 01:00) holds 00:00..00:50; the point at 01:00:00 opens the next bucket; end is exclusive.
    answer = query(client, [a], "count", 3600, end=T0 + timedelta(hours=1, minutes=50))
    assert [p["value"] for p in answer["data_points"]] == [6, 5]


def test_limit_offset_and_too_many_buckets(client: httpx.Client, two_devices: tuple[str, str]) -> None:
    a, b = two_devices
    body = {"devices": [a, b], "metrics": ["m"], "start_time": iso(T0), "end_time": iso(T0 + timedelta(hours=2)),
            "aggregation": "min", "interval": 3600, "limit": 2, "offset": 1}  # fmt: skip
    answer = eventually(
        lambda: (r := client.post("/api/v1/telemetry/query", json=body).json()) and r["count"] == 2 and r
    )
    mins = {a: [0, 6], b: [100, 106]}
    in_order = [mins[d][hour] for hour in (0, 1) for d in sorted((a, b))]
    assert [p["value"] for p in answer["data_points"]] == in_order[1:3]
    r = client.post("/api/v1/telemetry/query", json={**body, "interval": 60, "limit": 100, "offset": 0})
    assert r.status_code == 422
    assert r.json()["detail"] == ("interval: 60s over this range gives 120 buckets per series, more than limit 100; "
                                  "use a larger interval or a shorter range")  # fmt: skip


def test_aggregated_points_carry_the_metric_definitions_unit(client: httpx.Client, servers: Servers) -> None:
    defined, free, device = unique("temp"), unique("free"), unique("dev")
    r = client.post("/api/v1/telemetry/metrics", json={"name": defined, "data_type": "numeric", "unit": "celsius"})
    assert r.status_code == 201, r.text
    ingest(client, device, [(T0, 20.0), (T0 + timedelta(minutes=1), 22.0)], metric=defined)
    ingest(client, device, [(T0, 1.0)], metric=free)
    wait_rows(servers, device, 3)
    for interval, source in ((3600, "rollup_hour"), (90, "raw")):  # 90 s: not whole minutes, so raw points
        answer = query(client, [device], "avg", interval, metric=defined)
        assert answer["source"] == source
        assert [(p["value"], p["unit"]) for p in answer["data_points"]] == [(21.0, "celsius")], answer
    # A metric without a definition has no unit to give: the bucket's points need not agree on one.
    assert [p["unit"] for p in query(client, [device], "avg", 3600, metric=free)["data_points"]] == [None]


def test_no_data_is_an_empty_list(client: httpx.Client) -> None:
    answer = query(client, [unique("none")], "avg", 3600)
    assert (answer["data_points"], answer["count"], answer["series"]) == ([], 0, [])


def test_range_endpoint_defaults(client: httpx.Client, servers: Servers) -> None:
    device = unique("rng")
    now = datetime.now(UTC).replace(microsecond=0)
    ingest(client, device, [(now - timedelta(hours=h), float(h)) for h in range(0, 48, 2)])
    wait_rows(servers, device, 24)
    url = f"/api/v1/telemetry/devices/{device}/metrics/m/range"
    raw = client.get(url, params={"time_range": "6h"}).json()
    assert (raw["aggregation"], raw["source"], raw["count"]) == (None, "raw", 3)
    week = eventually(lambda: (r := client.get(url, params={"time_range": "7d"}).json())["count"] == 24 and r)
    assert (week["aggregation"], week["interval"], week["source"]) == ("avg", 3600, "rollup_hour")
    assert sorted(p["value"] for p in week["data_points"]) == [float(h) for h in range(0, 48, 2)]
    r = client.get(url, params={"time_range": "2d"})
    assert r.status_code == 422
    assert (
        r.json()["detail"].startswith("time_range: ")
        and "allowed values: 1h, 6h, 24h, 7d, 30d, 90d" in r.json()["detail"]
    )


def test_a_long_range_of_a_non_numeric_metric_returns_its_points(client: httpx.Client, servers: Servers) -> None:
    # 7d and longer default to avg; a boolean series has nothing to average, and an empty answer would hide it.
    device = unique("rng_bool")
    now = datetime.now(UTC).replace(microsecond=0)
    sent = [(now - timedelta(days=d, hours=1), d % 2 == 0) for d in range(5)]
    body = {"data_points": [{"timestamp": iso(t), "metric_name": "door", "value": v} for t, v in sent]}
    r = client.post(f"/api/v1/telemetry/devices/{device}/telemetry/batch", json=body)
    assert r.status_code == 200, r.text
    wait_rows(servers, device, len(sent))
    url = f"/api/v1/telemetry/devices/{device}/metrics/door/range"
    week = client.get(url, params={"time_range": "7d"}).json()
    assert (week["aggregation"], week["source"], week["count"]) == (None, "raw", 5)
    assert [(p["timestamp"], p["value"]) for p in week["data_points"]] == [(iso(t), v) for t, v in sorted(sent)]
    # Asked for explicitly, avg still answers with buckets of numeric points only: none here.
    asked = client.get(url, params={"time_range": "7d", "aggregation": "avg"}).json()
    assert (asked["aggregation"], asked["data_points"]) == ("avg", [])


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    batches=st.lists(
        st.lists(
            st.tuples(st.integers(0, 7199), st.floats(-1e6, 1e6, allow_nan=False).map(lambda v: round(v, 3))),
            min_size=1,
            max_size=30,
        ),
        min_size=1,
        max_size=4,
    )
)
def test_rollups_answer_like_raw_after_overwrites_and_late_points(client: httpx.Client, batches: list) -> None:
    device = unique("prop")
    for batch in batches:  # later batches overwrite earlier seconds and arrive out of time order
        ingest(client, device, [(T0 + timedelta(seconds=s), v) for s, v in batch])
    final: dict[int, float] = {}
    for batch in batches:
        for s, v in batch:
            final[s] = v

    # Raw answers, from unaligned 1-hour buckets that cover the same points as the hours.
    def raw(agg: str) -> list:
        body = {"devices": [device], "metrics": ["m"], "start_time": iso(T0 - timedelta(seconds=0.5)),
                "end_time": iso(T0 + timedelta(hours=2) - timedelta(seconds=0.5)), "aggregation": agg, "interval": 3600}  # fmt: skip
        return [p["value"] for p in client.post("/api/v1/telemetry/query", json=body).json()["data_points"]]

    hours = [[v for s, v in final.items() if s < 3600], [v for s, v in final.items() if s >= 3600]]
    want_count = [len(h) for h in hours if h]
    want_sum = [sum(h) for h in hours if h]

    def settled(values: list) -> bool:  # counts and sums of the final state (overwrites included)
        return len(values) == len(want_sum) and all(
            abs(g - w) <= 1e-6 * max(1, abs(w)) for g, w in zip(values, want_sum, strict=True)
        )

    eventually(
        lambda: raw("count") == want_count and settled(raw("sum")), timeout=15, what="raw holds the final points"
    )
    # Counts and sums both: a later batch of zeros (or of values that cancel) leaves the sum where it was, and
    # waiting on the sum alone once read the rollups before they counted that batch (avg off by 2x).
    eventually(lambda: [p["value"] for p in query(client, [device], "count", 3600)["data_points"]] == want_count
               and settled([p["value"] for p in query(client, [device], "sum", 3600)["data_points"]]),
               timeout=15, what="rollups caught up with every overwrite")  # fmt: skip
    for agg in ALL:
        rolled = query(client, [device], agg, 3600)
        assert rolled["source"] == "rollup_hour"
        got, want = [p["value"] for p in rolled["data_points"]], raw(agg)
        if agg in ("median", "p95", "p99"):
            assert all(
                abs(g - w) <= (0.02 / 2.02) * abs(w) * (1 + 1e-9) + 1e-9 for g, w in zip(got, want, strict=True)
            ), (agg, got, want)
        else:
            assert got == pytest.approx(want, rel=1e-9, abs=1e-6), agg


def test_percentiles_of_few_points_are_exact_from_raw(stack, two_devices: tuple[str, str], tmp_path_factory) -> None:
    from tests.support.stack import Stack

    a, _ = two_devices
    default = Stack(stack.servers, tmp_path_factory.mktemp("default-gateway"), api_key=stack.api_key)
    default.start("gateway")  # default settings: up to 200,000 points, percentiles read raw points
    try:
        default.wait_healthy()
        body = {"devices": [a], "metrics": ["m"], "start_time": iso(T0), "end_time": iso(T0 + timedelta(hours=2)),
                "aggregation": "median", "interval": 3600}  # fmt: skip
        answer = httpx.post(f"{default.url}/api/v1/telemetry/query", json=body, headers=stack.headers).json()
        assert (answer["source"], answer["relative_error"]) == ("raw", None)
        assert [p["value"] for p in answer["data_points"]] == EXPECTED_A["median"]
        body["aggregation"] = "avg"  # other aggregations are exact from rollups and still use them
        assert (
            httpx.post(f"{default.url}/api/v1/telemetry/query", json=body, headers=stack.headers).json()["source"]
            == "rollup_hour"
        )
    finally:
        default.stop_all()


def test_across_all_devices_reads_the_metric_hour_rollup(client: httpx.Client, servers: Servers) -> None:
    # A metric of its own, so "all devices" means these three: values k, 10 + k, 20 + k per 10 minutes.
    metric, devices = unique("across"), [unique("acr") for _ in range(3)]
    for i, device in enumerate(devices):
        ingest(client, device, [(T0 + timedelta(minutes=10 * k), 10 * i + k) for k in range(12)], metric=metric)

    def across(agg: str) -> dict:
        params = {"metric_name": metric, "aggregation_type": agg, "interval": 3600, "start_time": iso(T0),
                  "end_time": iso(T0 + timedelta(hours=2))}  # fmt: skip
        r = client.get("/api/v1/telemetry/aggregated", params=params)
        assert r.status_code == 200, r.text
        return r.json()

    hours = [[10 * i + k for i in range(3) for k in range(6 * h, 6 * h + 6)] for h in range(2)]
    eventually(lambda: [p["count"] for p in across("count")["data_points"]] == [18, 18], timeout=15,
               what="the metric-hour rollup holds every device")  # fmt: skip
    want = {"sum": [sum(h) for h in hours], "avg": [sum(h) / len(h) for h in hours],
            "min": [min(h) for h in hours], "max": [max(h) for h in hours]}  # fmt: skip
    for agg, values in want.items():
        answer = across(agg)
        assert (answer["source"], answer["device_id"]) == ("rollup_hour", None)
        assert [p["value"] for p in answer["data_points"]] == pytest.approx(values), agg
    p95 = across("p95")  # percentiles across devices merge the per-device sketches of rollup_hour
    nearest_rank = [sorted(h)[math.ceil(0.95 * len(h)) - 1] for h in hours]  # 25 and 31
    tolerance = p95["relative_error"] or 0.0  # None when answered exactly from raw points
    assert len(p95["data_points"]) == 2
    for got, want in zip([p["value"] for p in p95["data_points"]], nearest_rank, strict=True):
        assert abs(got - want) <= tolerance * want + 1e-9
