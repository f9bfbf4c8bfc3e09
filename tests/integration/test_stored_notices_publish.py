"""The ingest worker publishes one NOTICES message per transaction (StoredNotices), read by every projection."""

import asyncio

import msgspec
import nats
import structlog
from nats.aio.client import Client
from nats.aio.msg import Msg
from psycopg_pool import AsyncConnectionPool

from ingest_worker.handler import IngestHandler
from projection_worker.projections import device_stats, latest_values, rollups
from telemetry_core.events_out import EventsOut
from telemetry_core.headers import MSG_ID, REQUEST_ID, SIGNATURE
from telemetry_core.nats_flush import flush
from telemetry_core.points_validator import PointsValidator
from telemetry_core.settings import Settings
from telemetry_core.topology import POINTS_STREAM, STORED_BATCH_SUBJECT, points_subject
from telemetry_schemas.codecs import decode_notices
from tests.integration.test_admission import KEY
from tests.support.ids import unique


async def publish(nc: Client, validator: PointsValidator, device: str, value: float) -> int:
    body = msgspec.json.encode(
        {"device_id": device, "points": [{"timestamp": "2031-04-01T00:00:00Z", "metric_name": "t", "value": value}]}
    )
    headers = {SIGNATURE: validator.signature(body), REQUEST_ID: f"req-{device}"}
    return int((await nc.jetstream().publish(points_subject(device), body, headers=headers)).seq)


async def fetch(nc: Client, devices: list[str]) -> list[Msg]:
    got: list[Msg] = []
    for device in devices:
        sub = await nc.jetstream().pull_subscribe(f"telemetry.points.*.{device}", stream=POINTS_STREAM)
        try:
            got.extend(await sub.fetch(1, timeout=1.0))
        finally:
            await sub.unsubscribe()
    return got


async def test_one_transaction_of_three_messages_publishes_one_notices_message(
    nc: Client, pool: AsyncConnectionPool, settings: Settings
) -> None:
    validator = PointsValidator(KEY)
    devices = [unique("nb") for _ in range(3)]
    seen: list[Msg] = []
    listener = await nats.connect(settings.nats_url)

    async def on_notices(msg: Msg) -> None:
        if any(n.device_id in devices for n in decode_notices(msg.data)):
            seen.append(msg)

    await listener.subscribe(STORED_BATCH_SUBJECT, cb=on_notices)
    await flush(listener)
    try:
        seqs = [await publish(nc, validator, d, float(i)) for i, d in enumerate(devices)]
        handler = IngestHandler(pool, nc.jetstream(), EventsOut(nc, settings.event_prefix), structlog.get_logger(),
                                validator, nc)  # fmt: skip
        assert await handler(await fetch(nc, devices)) == []
        for _ in range(100):  # the notice is published before the handler returns; its delivery here follows
            if seen:
                break
            await asyncio.sleep(0.02)
            await flush(listener)
    finally:
        await listener.close()
    # A stack's ingest worker on the same servers (e2e tests in this process) may store them too, in its own
    # transactions: this handler's message is the one holding all three.
    ours = [m for m in seen if {n.device_id for n in decode_notices(m.data)} >= set(devices)]
    assert len(ours) == 1, [decode_notices(m.data) for m in seen]
    (msg,) = ours
    notices = decode_notices(msg.data)
    assert [(n.device_id, n.points_seq) for n in notices] == list(zip(devices, seqs, strict=True))
    assert all(n.rollups_applied and [m.count for m in n.metrics] == [1] for n in notices)
    assert msg.headers is not None
    assert msg.headers[MSG_ID].startswith(f"stored:{seqs[0]}-{seqs[-1]}:3:")
    assert msg.headers[REQUEST_ID].split(",") == [f"req-{d}" for d in devices]
    # Every projection reads it as the three notices.
    for projection in (latest_values, rollups, device_stats):
        assert projection.decode(msg.data) == notices
