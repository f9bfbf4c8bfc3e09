"""NFR-005: when the platform event cannot be published, the points are stored all the same; the failure counts."""

import msgspec
import nats
import structlog
from nats.aio.client import Client
from psycopg_pool import AsyncConnectionPool

from ingest_worker.handler import IngestHandler
from telemetry_core.events_out import EventsOut
from telemetry_core.headers import SIGNATURE
from telemetry_core.metrics import EVENTS_OUT_FAILED
from telemetry_core.points_validator import PointsValidator
from telemetry_core.settings import Settings
from telemetry_core.topology import points_subject
from tests.integration.test_admission import KEY, messages_of
from tests.support.ids import unique


async def test_a_failing_event_publish_does_not_stop_ingestion(
    nc: Client, pool: AsyncConnectionPool, settings: Settings
) -> None:
    # A connection used only for events, closed on purpose: every publish on it raises ConnectionClosedError.
    broken = await nats.connect(settings.nats_url)
    await broken.close()
    events = EventsOut(broken, settings.event_prefix, on_failure=lambda name: EVENTS_OUT_FAILED.labels(name).inc())
    before = EVENTS_OUT_FAILED.labels("data.received")._value.get()
    validator = PointsValidator(KEY)
    handler = IngestHandler(pool, nc.jetstream(), events, structlog.get_logger(), validator, nc)
    device = unique("dev")
    body = msgspec.json.encode(
        {"device_id": device, "points": [{"timestamp": "2031-02-01T00:00:00Z", "metric_name": "t", "value": 4.5}]}
    )
    await nc.jetstream().publish(points_subject(device), body, headers={SIGNATURE: validator.signature(body)})
    msgs = await messages_of(nc, device, at_most=1)

    rejected = await handler(msgs)  # raises if the failed publish leaked out

    assert rejected == []
    assert handler.points_written == 1
    assert events.failures == 1
    assert EVENTS_OUT_FAILED.labels("data.received")._value.get() == before + 1
    async with pool.connection() as conn:
        cur = await conn.execute("SELECT value_num FROM telemetry.points WHERE device_id = %s", (device,))
        assert await cur.fetchall() == [(4.5,)]
