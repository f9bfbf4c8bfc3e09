"""E2: metric definitions, event-sourced, unique under races, and enforced at ingestion."""

import asyncio
import gzip
import json
import subprocess
import sys

import httpx
import msgspec
import nats
import psycopg
import pytest

from telemetry_core.nats_flush import flush
from telemetry_core.topology import DLQ_STREAM, device_of_points_subject, points_subject
from telemetry_schemas.codecs import dead_letter_decoder
from tests.e2e.conftest import point, wait_rows
from tests.support.eventually import eventually
from tests.support.ids import unique
from tests.support.servers import Servers
from tests.support.stack import Stack

pytestmark = pytest.mark.e2e
URL = "/api/v1/telemetry/metrics"


def definition(name: str, **extra: object) -> dict:
    return {"name": name, "data_type": "numeric", **extra}


def test_create_returns_the_full_definition_and_get_reads_it(client: httpx.Client) -> None:
    name = unique("battery")
    body = {
        "name": name, "description": "Device battery percentage", "data_type": "numeric", "metric_type": "gauge",
        "unit": "percent", "min_value": 0, "max_value": 100, "retention_days": 30, "aggregation_interval": 120,
        "tags": ["power"], "metadata": {"owner": "ops"},
    }  # fmt: skip
    r = client.post(URL, json=body)
    assert r.status_code == 201
    created = r.json()
    assert created["metric_id"].startswith("met_")
    assert created["created_by"].startswith("apikey:")
    assert created["created_at"] == created["updated_at"]
    assert {k: created[k] for k in body} == {**body, "min_value": 0.0, "max_value": 100.0}
    # Read-your-writes: the create returned only once its event was in the read model.
    assert client.get(f"{URL}/{name}").json() == created


def test_defaults_are_applied(client: httpx.Client) -> None:
    created = client.post(URL, json={"name": unique("m"), "data_type": "string"}).json()
    assert (created["metric_type"], created["retention_days"], created["aggregation_interval"]) == ("gauge", 90, 60)
    assert (created["tags"], created["metadata"], created["min_value"], created["unit"]) == ([], {}, None, None)


def test_a_name_is_unique(client: httpx.Client) -> None:
    name = unique("m")
    first = client.post(URL, json=definition(name)).json()
    r = client.post(URL, json=definition(name, data_type="string"))
    assert r.status_code == 409
    assert r.json()["detail"] == f"metric {name!r} already exists (metric_id {first['metric_id']})"


def test_delete_then_define_again(client: httpx.Client) -> None:
    name = unique("m")
    first = client.post(URL, json=definition(name)).json()
    r = client.delete(f"{URL}/{name}")
    assert (r.status_code, r.json()["success"], r.json()["metric_id"]) == (200, True, first["metric_id"])
    assert client.get(f"{URL}/{name}").status_code == 404
    r = client.delete(f"{URL}/{name}")
    assert (r.status_code, r.json()["detail"]) == (404, f"metric definition {name!r} not found")
    again = client.post(URL, json=definition(name, data_type="boolean"))
    assert again.status_code == 201
    assert again.json()["metric_id"] != first["metric_id"]
    assert client.get(f"{URL}/{name}").json()["data_type"] == "boolean"


def test_delete_keeps_the_data(client: httpx.Client, servers: Servers) -> None:
    name, device = unique("m"), unique("dev")
    client.post(URL, json=definition(name))
    client.post(f"/api/v1/telemetry/devices/{device}/telemetry", json=point(metric=name, value=5))
    wait_rows(servers, device, 1)
    assert client.delete(f"{URL}/{name}").status_code == 200
    assert len(wait_rows(servers, device, 1)) == 1


def test_list_filters_and_pages(client: httpx.Client) -> None:
    prefix = unique("lst")
    for i, (dt, mt) in enumerate([("numeric", "counter"), ("string", "gauge"), ("numeric", "gauge")]):
        client.post(URL, json={"name": f"{prefix}_{i}", "data_type": dt, "metric_type": mt})
    body = client.get(URL, params={"data_type": "numeric", "metric_type": "gauge", "limit": 1000}).json()
    assert f"{prefix}_2" in [m["name"] for m in body["metrics"]]
    assert {f"{prefix}_0", f"{prefix}_1"}.isdisjoint(m["name"] for m in body["metrics"])
    assert all((m["data_type"], m["metric_type"]) == ("numeric", "gauge") for m in body["metrics"])
    assert body["filters"] == {"data_type": "numeric", "metric_type": "gauge"}
    assert body["count"] == len(body["metrics"]) == body["total"]
    page = client.get(URL, params={"limit": 1, "offset": 1}).json()
    assert (page["count"], page["limit"], page["offset"]) == (1, 1, 1)
    assert page["total"] >= 3
    r = client.get(URL, params={"data_type": "vector"})
    assert r.status_code == 422
    assert r.json()["detail"].startswith("data_type: ") and "allowed values: numeric, string" in r.json()["detail"]


@pytest.mark.parametrize(
    ("body", "detail"),
    [
        ({"name": "x_bad_retention", "data_type": "numeric", "retention_days": 0}, "retention_days: Expected `int` >= 1"),
        ({"name": "x_bad_interval", "data_type": "numeric", "aggregation_interval": 86401}, "aggregation_interval: Expected `int` <= 86400"),
        ({"name": "x_bad_type", "data_type": "vector"}, "data_type: Invalid enum value 'vector'"),
        ({"name": "bad.name", "data_type": "numeric"}, "name: Expected `str` matching regex"),
        ({"name": "x_min_max", "data_type": "numeric", "min_value": 5, "max_value": 1}, "min_value: 5.0 is greater than max_value 1.0"),
        ({"name": "x_str_bounds", "data_type": "string", "max_value": 1}, "min_value/max_value: only numeric metrics have bounds"),
        ({"data_type": "numeric"}, "body: Object missing required field `name`"),
    ],
)  # fmt: skip
def test_invalid_definitions_are_422(client: httpx.Client, body: dict, detail: str) -> None:
    r = client.post(URL, json=body)
    assert r.status_code == 422
    assert r.json()["detail"].startswith(detail)


async def test_two_gateways_racing_create_one_winner(stack: Stack, tmp_path_factory: pytest.TempPathFactory) -> None:
    second = Stack(stack.servers, tmp_path_factory.mktemp("second-gateway"), api_key=stack.api_key)
    second.start("gateway")
    try:
        second.wait_healthy()
        async with httpx.AsyncClient(headers=stack.headers, timeout=15) as client:
            for _ in range(10):
                name = unique("race")
                results = await asyncio.gather(
                    client.post(f"{stack.url}{URL}", json=definition(name)),
                    client.post(f"{second.url}{URL}", json=definition(name)),
                )
                assert sorted(r.status_code for r in results) == [201, 409]
                winner = next(r for r in results if r.status_code == 201).json()
                assert (await client.get(f"{second.url}{URL}/{name}")).json() == winner
    finally:
        second.stop_all()


async def test_metric_defined_event_is_published(stack: Stack) -> None:
    name = unique("m")
    nc = await nats.connect(stack.servers.nats_url)
    sub = await nc.subscribe("telemetry_service.metric.defined")
    await flush(nc)  # subscribed at the server before the event can be published
    try:
        async with httpx.AsyncClient(base_url=stack.url, headers=stack.headers, timeout=15) as client:
            assert (await client.post(URL, json=definition(name))).status_code == 201
        while (event := json.loads((await sub.next_msg(timeout=15)).data))["name"] != name:
            pass
        assert (event["type"], event["data_type"]) == ("metric.defined", "numeric")
    finally:
        await nc.close()


def test_points_are_validated_against_their_definition(client: httpx.Client, servers: Servers) -> None:
    name, device = unique("pct"), unique("dev")
    assert client.post(URL, json=definition(name, min_value=0, max_value=100)).status_code == 201
    r = client.post(f"/api/v1/telemetry/devices/{device}/telemetry", json=point(metric=name, value=150))
    assert (r.status_code, r.json()["detail"]) == (422, f"value: 150 is above max_value 100.0 of metric {name!r}")
    r = client.post(f"/api/v1/telemetry/devices/{device}/telemetry", json=point(metric=name, value="high"))
    assert (r.status_code, r.json()["detail"]) == (422, f"value: metric {name!r} is defined as numeric, got a string")
    r = client.post(f"/api/v1/telemetry/devices/{device}/telemetry", json=point(metric=name, value=[1, 2]))
    assert (r.status_code, r.json()["detail"]) == (
        422, f"value: metric {name!r} is defined as numeric, got a JSON object or array"
    )  # fmt: skip
    batch = [point(metric=name, value=v, ts=f"2025-12-18T10:00:0{i}Z") for i, v in enumerate([1, -1, 50, True, 100])]
    body = client.post(f"/api/v1/telemetry/devices/{device}/telemetry/batch", json={"data_points": batch}).json()
    assert (body["ingested_count"], [e["index"] for e in body["errors"]]) == (3, [1, 3])
    assert body["errors"][0] == {
        "index": 1, "field": "data_points[1].value", "error": f"-1 is below min_value 0.0 of metric {name!r}",
    }  # fmt: skip
    bulk = client.post("/api/v1/telemetry/bulk", json={device: [point(metric=name, value=101)]}).json()
    assert bulk["results"][device]["errors"][0]["field"] == f"{device}[0].value"
    assert sorted(r[3] for r in wait_rows(servers, device, 3)) == [1.0, 50.0, 100.0]
    undefined = client.post(
        f"/api/v1/telemetry/devices/{device}/telemetry", json=point(metric=unique("free"), value=1e9)
    )
    assert undefined.status_code == 200


async def test_direct_publishes_are_validated_by_the_worker(stack: Stack, servers: Servers) -> None:
    name, device = unique("pct"), unique("dev")
    async with httpx.AsyncClient(base_url=stack.url, headers=stack.headers, timeout=15) as client:
        assert (await client.post(URL, json=definition(name, max_value=10))).status_code == 201
    message = {"device_id": device, "points": [point(metric=name, value=5, ts="2025-12-18T10:00:00Z"),
                                                point(metric=name, value=11, ts="2025-12-18T10:00:01Z")]}  # fmt: skip
    nc = await nats.connect(stack.servers.nats_url)
    js = nc.jetstream()
    try:
        await js.publish(points_subject(device), msgspec.json.encode(message))
        sub = await js.subscribe("telemetry.dlq.ingest", stream=DLQ_STREAM, ordered_consumer=True)
        while (
            device_of_points_subject(
                (letter := dead_letter_decoder.decode((await sub.next_msg(timeout=15)).data)).subject
            )
            != device
        ):
            pass
        assert letter.reason == f"points[1].value: 11 is above max_value 10.0 of metric {name!r}"
    finally:
        await nc.close()
    assert [r[3] for r in wait_rows(servers, device, 1)] == [5.0]


def test_replay_rebuilds_the_same_definitions(stack: Stack, servers: Servers, client: httpx.Client) -> None:
    for i in range(3):
        client.post(URL, json=definition(unique(f"rp{i}")))
    deleted = unique("rp_del")
    client.post(URL, json=definition(deleted))
    client.delete(f"{URL}/{deleted}")

    def snapshot() -> list[tuple]:
        with psycopg.connect(servers.database_url) as conn:
            return conn.execute(
                "SELECT name, metric_id, data_type, created_at FROM telemetry.metric_definitions ORDER BY name"
            ).fetchall()

    before = snapshot()
    stack.kill("projection-worker")
    out = eventually(
        lambda: (p := subprocess.run([sys.executable, "-m", "telemetry_core.cli", "replay", "metric_definitions",
                                      "--offline"],
                                     env=stack.env(), capture_output=True, text=True)).returncode == 0 and p,
        timeout=20, what="replay accepted once the killed worker's pulls expired",
    )  # fmt: skip
    assert "projection metric_definitions reset" in out.stdout
    assert snapshot() == []
    stack.start("projection-worker")
    assert eventually(lambda: snapshot() == before, timeout=30, what="rebuilt") is True
    assert deleted not in [row[0] for row in before]


def test_bodies_are_decoded_strictly_compressed_or_not(client: httpx.Client) -> None:
    name = unique("gz")
    r = client.post(
        URL, content=gzip.compress(json.dumps(definition(name)).encode()), headers={"Content-Encoding": "gzip"}
    )
    assert (r.status_code, r.json()["name"]) == (201, name)
    # A string is not an int (a lenient decoder would have turned "30" into 30).
    r = client.post(URL, json=definition(unique("m"), retention_days="30"))
    assert (r.status_code, r.json()["detail"]) == (422, "retention_days: Expected `int`, got `str`")
    for empty in (b"", b"  \n"):
        r = client.post(URL, content=empty, headers={"Content-Type": "application/json"})
        assert (r.status_code, r.json()) == (400, {"detail": "request body is empty; send a JSON object"})
    r = client.post(URL, content=b'{"name": ', headers={"Content-Type": "application/json"})
    assert r.status_code == 400
    assert r.json()["detail"].startswith("body is not valid JSON")


def test_bodies_over_the_limit_are_413_on_the_wire_or_inflated(client: httpx.Client) -> None:
    limit = 16 * 1024 * 1024  # TELEMETRY_MAX_BODY_BYTES, default
    detail = f"request body exceeds {limit} bytes (after decompression)"
    padded = json.dumps(definition(unique("big"), description="x" * (limit + 1))).encode()
    r = client.post(URL, content=padded, headers={"Content-Type": "application/json"})
    assert (r.status_code, r.json()) == (413, {"detail": detail})
    r = client.post(URL, content=gzip.compress(padded), headers={"Content-Encoding": "gzip"})
    assert (r.status_code, r.json()) == (413, {"detail": detail})


def test_detailed_health_reports_the_definitions_cache(client: httpx.Client, stack: Stack) -> None:
    def cache() -> dict:
        return httpx.get(f"{stack.url}/health/detailed", headers=stack.headers, timeout=10).json()["components"][
            "definitions_cache"
        ]

    before = cache()
    assert before["status"] == "healthy"
    assert client.post("/api/v1/telemetry/metrics", json=definition(unique("m"))).status_code == 201
    # A create returns once the gateway's cache has the definition: the count moved by at least this one.
    assert cache()["metrics"]["definitions"] >= before["metrics"]["definitions"] + 1


def test_a_json_metric_admits_objects_and_arrays_and_refuses_numbers(client: httpx.Client) -> None:
    name, device = unique("shape"), unique("dev")
    assert client.post(URL, json=definition(name, data_type="json")).status_code == 201
    url = f"/api/v1/telemetry/devices/{device}/telemetry"
    assert client.post(url, json=point(metric=name, value={"a": 1})).status_code == 200
    assert client.post(url, json=point(metric=name, value=[1, {"a": 2}])).status_code == 200
    r = client.post(url, json=point(metric=name, value=3))
    assert (r.status_code, r.json()["detail"]) == (422, f"value: metric {name!r} is defined as json, got a number")
