"""One verdict per point: what the ingest worker stores is exactly what the alert engine evaluates."""

import asyncio
import time

import httpx
import msgspec
import nats
import psycopg
import pytest
from nats.js import JetStreamContext

from telemetry_core.points_validator import PointsValidator
from telemetry_core.topology import DLQ_STREAM, device_of_points_subject, points_subject
from telemetry_schemas.codecs import dead_letter_decoder
from tests.e2e.conftest import now_iso, point, wait_rows
from tests.e2e.test_alert_engine import alerts_of, make_rule, send
from tests.support.eventually import eventually
from tests.support.ids import unique
from tests.support.servers import Servers
from tests.support.stack import Stack

pytestmark = pytest.mark.e2e
METRICS = "/api/v1/telemetry/metrics"


async def publish_direct(js: JetStreamContext, device: str, points: list[dict], **headers: str) -> None:
    body = msgspec.json.encode({"device_id": device, "points": points})
    await js.publish(points_subject(device), body, headers=headers or None)


async def test_a_forged_signature_from_a_direct_publisher_is_not_trusted(stack: Stack, servers: Servers) -> None:
    metric, device = unique("pwr"), unique("dev")
    async with httpx.AsyncClient(base_url=stack.url, headers=stack.headers, timeout=15) as client:
        r = await client.post(METRICS, json={"name": metric, "data_type": "numeric", "max_value": 100})
        assert r.status_code == 201, r.text
    with httpx.Client(base_url=stack.url, headers=stack.headers) as sync_client:
        rule = make_rule(sync_client, metric, threshold_value=99, trigger_count=1, device_ids=[device])
    bad, good = point(metric, 150, ts=now_iso(-2)), point(metric, 5, ts=now_iso(-1))
    forged_body = msgspec.json.encode({"device_id": device, "points": [bad, good]})
    forged = {
        "X-Telemetry-Validated": "1",  # the old, trusted-by-anyone marker
        "X-Telemetry-Signature": PointsValidator(b"a guessed key, not the real one").signature(forged_body),
    }
    nc = await nats.connect(stack.servers.nats_url)
    try:
        js = nc.jetstream()
        dlq = await js.subscribe("telemetry.dlq.ingest", stream=DLQ_STREAM, ordered_consumer=True)
        await js.publish(points_subject(device), forged_body, headers=forged)
        await publish_direct(js, device, [point(metric, 100, ts=now_iso())])  # valid, and it breaches
        while (
            device_of_points_subject((letter := dead_letter_decoder.decode((await dlq.next_msg(15)).data)).subject)
            != device
        ):
            pass
    finally:
        await nc.close()
    assert letter.reason == f"points[0].value: 150 is above max_value 100.0 of metric {metric!r}"
    assert [r[3] for r in wait_rows(servers, device, 2)] == [5.0, 100.0]
    with httpx.Client(base_url=stack.url, headers=stack.headers) as client:
        (alert,) = eventually(lambda: alerts_of(client, rule["rule_id"]), timeout=15, what="alert")
    assert alert["current_value"] == 100  # the forged 150 was never evaluated


def _stored_devices(servers: Servers, metric: str) -> set[str]:
    with psycopg.connect(servers.database_url) as conn:
        rows = conn.execute("SELECT DISTINCT device_id FROM telemetry.points WHERE metric_name = %s", (metric,))
        return {r[0] for r in rows.fetchall()}


async def test_stored_and_evaluated_agree_while_the_definition_changes(stack: Stack, servers: Servers) -> None:
    """Definitions flip while directly published points are in flight: each point is stored iff it alerts."""
    metric, sentinel_metric = unique("race"), unique("sentinel")
    devices: list[str] = []
    async with httpx.AsyncClient(base_url=stack.url, headers=stack.headers, timeout=15) as client:
        with httpx.Client(base_url=stack.url, headers=stack.headers) as sync_client:
            rule = make_rule(sync_client, metric, threshold_value=40, trigger_count=1)
            sentinel_rule = make_rule(sync_client, sentinel_metric, threshold_value=40, trigger_count=1)
        nc = await nats.connect(stack.servers.nats_url)
        try:
            js = nc.jetstream()
            dlq = await js.subscribe("telemetry.dlq.ingest", stream=DLQ_STREAM, ordered_consumer=True)

            async def burst(n: int) -> None:
                for _ in range(n):
                    devices.append(unique("racer"))
                    await publish_direct(js, devices[-1], [point(metric, 50)])  # above max_value when defined

            for _ in range(5):
                define = client.post(METRICS, json={"name": metric, "data_type": "numeric", "max_value": 10})
                await asyncio.gather(define, burst(4))
                await asyncio.gather(client.delete(f"{METRICS}/{metric}"), burst(4))
            assert (
                await client.post(METRICS, json={"name": metric, "data_type": "numeric", "max_value": 10})
            ).is_success
            await burst(1)
            # Every point has its one verdict: stored, or dead-lettered.
            rejected: set[str] = set()
            deadline = time.monotonic() + 30
            while len(rejected | _stored_devices(servers, metric)) < len(devices):
                assert time.monotonic() < deadline, "not every point was stored or dead-lettered within 30s"
                try:
                    letter = dead_letter_decoder.decode((await dlq.next_msg(0.2)).data)
                except TimeoutError:
                    continue
                device = device_of_points_subject(letter.subject)
                if device in devices:  # the DLQ subject is shared: other tests' letters must not count
                    rejected.add(device)
        finally:
            await nc.close()
    stored = _stored_devices(servers, metric)
    assert stored.isdisjoint(rejected)
    assert rejected & set(devices)  # the race produced rejections (else this test would prove nothing)
    # The engine reads POINTS in order: once a later point alerts, every earlier one has been evaluated.
    with httpx.Client(base_url=stack.url, headers=stack.headers) as client:
        send(client, unique("sentinel"), sentinel_metric, [50])
        eventually(lambda: alerts_of(client, sentinel_rule["rule_id"]), timeout=15, what="sentinel alert")
        alerted = {a["device_id"] for a in alerts_of(client, rule["rule_id"])}
    assert alerted == stored
