"""The ingest worker admits a directly published message once: bad points dead-lettered, good ones re-published signed."""

import msgspec
import structlog
from nats.aio.client import Client
from nats.aio.msg import Msg
from psycopg_pool import AsyncConnectionPool

from ingest_worker.handler import IngestHandler
from telemetry_core.events_out import EventsOut
from telemetry_core.points_validator import PointsValidator, Unadmitted
from telemetry_core.settings import Settings
from telemetry_core.topology import POINTS_STREAM, points_subject
from tests.support.ids import unique
from tests.support.stack import SIGNING_KEY

# The test run's key: if the stack's own ingest worker admits the message first, its copy is the same.
KEY = SIGNING_KEY.encode()
GOOD = {"timestamp": "2031-01-01T00:00:00Z", "metric_name": "t", "value": 1}
BAD = {"timestamp": "2031-01-01T00:00:01Z", "metric_name": "t", "value": None}


async def messages_of(nc: Client, device: str, at_most: int = 10) -> list[Msg]:
    sub = await nc.jetstream().pull_subscribe(f"telemetry.points.*.{device}", stream=POINTS_STREAM)
    try:
        return await sub.fetch(at_most, timeout=1.0)
    finally:
        await sub.unsubscribe()


async def test_a_redelivered_direct_message_is_re_published_once(
    nc: Client, pool: AsyncConnectionPool, settings: Settings
) -> None:
    js, device = nc.jetstream(), unique("dev")
    validator = PointsValidator(KEY)
    handler = IngestHandler(pool, js, EventsOut(nc, settings.event_prefix), structlog.get_logger(), validator, nc)
    await js.publish(points_subject(device), msgspec.json.encode({"device_id": device, "points": [GOOD, BAD]}))
    # The stack's ingest worker, when running, may admit it too: its copy is the same message (same id, key).
    (original,) = await messages_of(nc, device, at_most=1)
    verdict = validator.read(original)
    assert isinstance(verdict, Unadmitted)
    await handler._admit(original, verdict)
    await handler._admit(original, verdict)  # as after a crash before the ack: same message id
    original_again, copy = await messages_of(nc, device)
    assert original_again.metadata.sequence.stream == original.metadata.sequence.stream
    accepted = validator.accepted(copy)
    assert accepted is not None and [p.value for p in accepted.points] == [1]
    assert validator.accepted(original) is None
