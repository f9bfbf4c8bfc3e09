"""MQTT devices: a publish on telemetry/points/<device> lands in POINTS and is admitted like a direct message."""

import json
from pathlib import Path

import httpx
import msgspec
import nats
import pytest

from telemetry_core.topology import points_subject
from tests.e2e.conftest import now_iso, point, stored_rows, wait_latest, wait_rows
from tests.e2e.test_direct_publish import dead_letter_for
from tests.e2e.test_dlq_tools import cli, letters_of
from tests.support.ids import unique
from tests.support.mqtt import mqtt_device, points_topic
from tests.support.servers import Servers
from tests.support.stack import Stack

pytestmark = pytest.mark.e2e


def test_mqtt_qos1_points_are_queryable_through_the_http_api(
    stack: Stack, servers: Servers, client: httpx.Client
) -> None:
    device = unique("dev")
    first, second = point(value=20.5, ts=now_iso(-1), unit="celsius"), point(value=21.5, ts=now_iso())
    with mqtt_device(servers.mqtt_port) as mqtt:
        mqtt.publish_points(device, [first, second], qos=1)
    latest = wait_latest(client, device, "temperature")
    assert (latest["device_id"], latest["value"], latest["timestamp"]) == (device, 21.5, second["timestamp"])
    q = {"metrics": ["temperature"], "devices": [device], "start_time": now_iso(-3600), "end_time": now_iso(60)}
    r = client.post("/api/v1/telemetry/query", json=q)
    assert r.status_code == 200, r.text
    assert [(p["value"], p["unit"]) for p in r.json()["data_points"]] == [(20.5, "celsius"), (21.5, None)]


async def test_bad_mqtt_points_are_dead_lettered_and_good_ones_of_the_message_stored(
    stack: Stack, servers: Servers
) -> None:
    device = unique("dev")
    good = [point(value=1, ts="2025-12-18T10:00:00Z"), point(value=2, ts="2025-12-18T10:00:01Z")]
    bad = {"timestamp": "2025-12-18T10:00:02Z", "metric_name": "t", "value": None}
    with mqtt_device(servers.mqtt_port) as mqtt:
        mqtt.publish_points(device, [good[0], bad, good[1]])
    nc = await nats.connect(stack.servers.nats_url)
    try:
        letter = await dead_letter_for(nc.jetstream(), points_subject(device))
    finally:
        await nc.close()
    assert letter.worker == "ingest"
    assert letter.reason.startswith("points[1].value: Expected `bool | int | float | str | object | array`, got `null`")
    assert json.loads(letter.payload) == [bad]
    assert [r[3] for r in wait_rows(servers, device, 2)] == [1.0, 2.0]


async def test_an_undecodable_mqtt_payload_is_dead_lettered_with_its_reason(stack: Stack, servers: Servers) -> None:
    device = unique("dev")
    with mqtt_device(servers.mqtt_port) as mqtt:
        mqtt.publish(points_topic(device), b"21.5")  # a bare reading, as many devices send: not RecordPoints
    nc = await nats.connect(stack.servers.nats_url)
    try:
        letter = await dead_letter_for(nc.jetstream(), points_subject(device))
    finally:
        await nc.close()
    assert letter.reason.startswith("not a RecordPoints message")
    assert letter.payload == "21.5"


def test_a_bad_mqtt_point_is_re_driven_by_dlq_retry_once_fixed(
    stack: Stack, servers: Servers, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    device = unique("dev")
    bad = {"timestamp": "2031-03-02T00:00:00Z", "metric_name": "t", "value": None}  # null: no value type
    with mqtt_device(servers.mqtt_port) as mqtt:
        mqtt.publish_points(device, [bad])
    (seq,) = letters_of(stack, device)
    assert stored_rows(servers, device) == []
    fixed = tmp_path / "fixed.json"
    fixed.write_bytes(msgspec.json.encode({"device_id": device, "points": [{**bad, "value": 21.5}]}))
    out = cli(monkeypatch, capsys, stack, "retry", str(seq), "--payload", str(fixed))
    assert out.startswith(f"re-published dead letter {seq} to {points_subject(device)}")
    assert [r[3] for r in wait_rows(servers, device, 1)] == [21.5]
