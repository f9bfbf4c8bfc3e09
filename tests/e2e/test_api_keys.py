"""API keys as data: `telemetry apikey create | list | revoke`, scopes, device limits, revocation everywhere."""

import time
from collections.abc import Iterator

import httpx
import psycopg
import pytest

from tests.e2e.conftest import point
from tests.support.auth import cli, create_key, gateway_copy
from tests.support.eventually import eventually
from tests.support.ids import unique
from tests.support.servers import Servers
from tests.support.stack import Stack

RULE = {"name": "too hot", "metric_name": "temperature", "condition": ">", "threshold_value": 30}


@pytest.fixture(scope="module")
def second_gateway(stack: Stack, servers: Servers, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    with gateway_copy(servers, tmp_path_factory.mktemp("second-gateway")) as copy:
        yield copy


def _key(value: str) -> dict[str, str]:
    return {"X-Api-Key": value}


def test_an_ingest_key_writes_its_devices_points_only(stack: Stack, servers: Servers) -> None:
    own, other = unique("dev"), unique("dev")
    _, key = create_key(servers, unique("sensor"), "ingest", devices=own)
    base = f"{stack.url}/api/v1/telemetry"
    r = httpx.post(f"{base}/devices/{own}/telemetry", json=point(), headers=_key(key))
    assert r.status_code == 200, r.text
    r = httpx.post(f"{base}/devices/{own}/telemetry/batch", json={"data_points": [point()]}, headers=_key(key))
    assert r.status_code == 200, r.text
    r = httpx.post(f"{base}/devices/{other}/telemetry", json=point(), headers=_key(key))
    assert (r.status_code, r.json()["detail"]) == (403, f"forbidden: this key may not write points of device {other!r}")
    r = httpx.post(f"{base}/bulk", json={own: [point()], other: [point()]}, headers=_key(key))
    assert (r.status_code, r.json()["detail"]) == (403, f"forbidden: this key may not write points of device {other!r}")
    # Nothing of the refused bulk request was published, not even the allowed device's point.
    with psycopg.connect(servers.database_url) as conn:
        rows = eventually(lambda: conn.execute("SELECT count(*) FROM telemetry.points WHERE device_id = %s",
                                               (own,)).fetchone()[0] == 2, what="2 points of the own device")  # fmt: skip
        assert rows


def test_an_ingest_key_cannot_read_or_define(stack: Stack, servers: Servers) -> None:
    _, key = create_key(servers, unique("sensor"), "ingest")
    base = f"{stack.url}/api/v1/telemetry"
    r = httpx.post(f"{base}/alerts/rules", json=RULE, headers=_key(key))
    assert (r.status_code, r.json()["detail"]) == (
        403, "forbidden: POST /api/v1/telemetry/alerts/rules needs scope admin; these credentials have ingest"
    )  # fmt: skip
    r = httpx.get(f"{base}/metrics", headers=_key(key))
    assert (r.status_code, r.json()["detail"]) == (
        403, "forbidden: GET /api/v1/telemetry/metrics needs scope read; these credentials have ingest"
    )  # fmt: skip
    # Without a device list it may write any device.
    assert httpx.post(f"{base}/devices/{unique('dev')}/telemetry", json=point(), headers=_key(key)).status_code == 200


def test_a_read_key_reads_and_an_admin_key_defines(stack: Stack, servers: Servers) -> None:
    _, reader = create_key(servers, unique("dashboard"), "read")
    admin_id, admin = create_key(servers, unique("ops"), "admin")
    base = f"{stack.url}/api/v1/telemetry"
    assert httpx.get(f"{base}/alerts/rules", headers=_key(reader)).status_code == 200
    body = {"metrics": ["temperature"], "start_time": "2025-01-01T00:00:00Z", "end_time": "2025-01-02T00:00:00Z"}
    assert httpx.post(f"{base}/query", json=body, headers=_key(reader)).status_code == 200
    assert httpx.post(f"{base}/devices/d1/telemetry", json=point(), headers=_key(reader)).status_code == 403
    assert httpx.post(f"{base}/alerts/rules", json=RULE, headers=_key(reader)).status_code == 403
    r = httpx.post(f"{base}/alerts/rules", json=RULE, headers=_key(admin))
    assert r.status_code == 201, r.text
    assert r.json()["created_by"] == f"apikey:{admin_id}"


def test_cli_lists_keys_without_the_key_itself(servers: Servers) -> None:
    name = unique("listed")
    key_id, key = create_key(servers, name, "ingest", devices="b_dev,a_dev")
    out = cli(servers, "apikey", "list").stdout
    assert key not in out
    line = next(ln for ln in out.splitlines() if ln.startswith(key_id))
    assert line.split("\t")[1:4] == [name, "ingest", "a_dev,b_dev"]
    assert line.split("\t")[-1] == "-"
    cli(servers, "apikey", "revoke", key_id)
    out = cli(servers, "apikey", "list").stdout
    line = next(ln for ln in out.splitlines() if ln.startswith(key_id))
    assert line.split("\t")[-1] != "-"  # revoked_at
    assert cli(servers, "apikey", "revoke", key_id).stdout.strip() == f"{key_id} was already revoked"


def test_cli_refuses_bad_input(servers: Servers) -> None:
    with pytest.raises(AssertionError, match="--devices limits an ingest key"):
        create_key(servers, "x", "read", devices="d1")
    with pytest.raises(AssertionError, match="is not a device id"):
        create_key(servers, "x", "ingest", devices="bad.device")
    with pytest.raises(AssertionError, match="no API key key_000000000000"):
        cli(servers, "apikey", "revoke", "key_000000000000")


def test_revocation_reaches_every_gateway_within_a_second(
    stack: Stack, second_gateway: Stack, servers: Servers
) -> None:
    key_id, key = create_key(servers, unique("doomed"), "read")
    urls = [f"{g.url}/api/v1/telemetry/metrics" for g in (stack, second_gateway)]
    for url in urls:
        assert httpx.get(url, headers=_key(key)).status_code == 200
    cli(servers, "apikey", "revoke", key_id)
    revoked_at = time.monotonic()
    for url in urls:
        eventually(lambda u=url: httpx.get(u, headers=_key(key)).status_code == 401,  # type: ignore[misc]
                   timeout=1.0, interval=0.01, what=f"revoked key refused by {url}")  # fmt: skip
    assert time.monotonic() - revoked_at < 1.0
    r = httpx.get(urls[1], headers=_key(key))
    assert r.json()["detail"] == "invalid API key"


def test_a_new_gateway_copy_loads_existing_keys_and_revocations(
    stack: Stack, servers: Servers, tmp_path_factory: pytest.TempPathFactory
) -> None:
    _, live = create_key(servers, unique("live"), "read")
    dead_id, dead = create_key(servers, unique("dead"), "read")
    cli(servers, "apikey", "revoke", dead_id)
    with gateway_copy(servers, tmp_path_factory.mktemp("late-gateway")) as late:
        url = f"{late.url}/api/v1/telemetry/metrics"
        assert httpx.get(url, headers=_key(live)).status_code == 200
        assert httpx.get(url, headers=_key(dead)).status_code == 401


def test_detailed_health_reports_the_api_key_cache(stack: Stack, servers: Servers) -> None:
    def cache() -> dict:
        r = httpx.get(f"{stack.url}/health/detailed", headers=stack.headers, timeout=10)
        return r.json()["components"]["api_key_cache"]

    before = cache()
    assert before["status"] == "healthy"
    create_key(servers, unique("counted"), "read")
    eventually(lambda: cache()["metrics"]["keys"] == before["metrics"]["keys"] + 1, what="one more live key")
