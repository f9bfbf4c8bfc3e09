"""Points published straight onto JetStream are validated by the ingest worker; rejects go to the DLQ."""

import json

import msgspec
import nats
import pytest

from telemetry_core.topology import DLQ_STREAM, device_of_points_subject, points_subject
from telemetry_schemas.codecs import dead_letter_decoder
from telemetry_schemas.dead_letter import DeadLetter
from tests.e2e.conftest import point, wait_rows
from tests.support.ids import unique
from tests.support.servers import Servers
from tests.support.stack import Stack

pytestmark = pytest.mark.e2e


async def dead_letter_for(js: nats.js.JetStreamContext, subject: str) -> DeadLetter:
    sub = await js.subscribe("telemetry.dlq.ingest", stream=DLQ_STREAM, ordered_consumer=True)
    try:
        while True:
            letter = dead_letter_decoder.decode((await sub.next_msg(timeout=15)).data)
            # POINTS stores telemetry.points.<device> under its slot: telemetry.points.<slot>.<device>.
            if device_of_points_subject(letter.subject) == device_of_points_subject(subject):
                return letter
    finally:
        await sub.unsubscribe()


async def test_undecodable_message_is_dead_lettered_with_reason(stack: Stack) -> None:
    device = unique("dev")
    nc = await nats.connect(stack.servers.nats_url)
    js = nc.jetstream()
    try:
        await js.publish(points_subject(device), b"this is not json")
        letter = await dead_letter_for(js, points_subject(device))
        assert letter.worker == "ingest"
        assert letter.reason.startswith("not a RecordPoints message: JSON is malformed")
        assert letter.payload == "this is not json"
        assert letter.stream_seq is not None
    finally:
        await nc.close()


async def test_bad_points_of_a_direct_message_are_dead_lettered_and_good_ones_stored(
    stack: Stack, servers: Servers
) -> None:
    device = unique("dev")
    good = [point(value=1, ts="2025-12-18T10:00:00Z"), point(value=2, ts="2025-12-18T10:00:01Z")]
    bad = {"timestamp": "2025-12-18T10:00:02Z", "metric_name": "t", "value": None}
    message = {"device_id": device, "points": [good[0], bad, good[1]], "some_future_field": 1}
    nc = await nats.connect(stack.servers.nats_url)
    js = nc.jetstream()
    try:
        await js.publish(points_subject(device), msgspec.json.encode(message))
        letter = await dead_letter_for(js, points_subject(device))
        assert letter.reason.startswith(
            "points[1].value: Expected `bool | int | float | str | object | array`, got `null`"
        )
        assert json.loads(letter.payload) == [bad]
        # A message claiming another device than its subject is rejected whole.
        other = {"device_id": "someone_else", "points": good}
        await js.publish(points_subject(unique("dev")), msgspec.json.encode(other))
    finally:
        await nc.close()
    assert [r[3] for r in wait_rows(servers, device, 2)] == [1.0, 2.0]


def test_a_dropped_partition_is_recreated_not_dead_lettered(stack: Stack, servers: Servers) -> None:
    import httpx
    import psycopg

    device = unique("dev")
    url = f"{stack.url}/api/v1/telemetry/devices/{device}/telemetry"
    assert httpx.post(url, json=point(value=1, ts="2090-05-05T00:00:00Z"), headers=stack.headers).status_code == 200
    wait_rows(servers, device, 1)
    with psycopg.connect(servers.database_url, autocommit=True) as conn:  # as retention would
        conn.execute("DROP TABLE telemetry.points_p20900505")
    assert httpx.post(url, json=point(value=2, ts="2090-05-05T00:00:01Z"), headers=stack.headers).status_code == 200
    assert [r[3] for r in wait_rows(servers, device, 1, timeout=30)] == [2.0]
