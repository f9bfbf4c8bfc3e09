"""The ingest worker announces a transaction's series to the gateways before it commits (ingest_worker/storing.py).

Without the announcement a gateway's query cache could answer older points than the database already shows, so a
transaction whose announcement cannot be delivered must not commit: it rolls back and the batch is retried.
"""

import msgspec
import nats
import pytest
import structlog
from nats.aio.client import Client
from psycopg_pool import AsyncConnectionPool

from ingest_worker.handler import IngestHandler
from telemetry_core.errors import TransientError
from telemetry_core.events_out import EventsOut
from telemetry_core.headers import SIGNATURE
from telemetry_core.nats_flush import flush
from telemetry_core.points_validator import PointsValidator
from telemetry_core.settings import Settings
from telemetry_core.topology import STORING_SUBJECT, points_subject
from telemetry_schemas.notices import PointsStoring
from tests.integration.test_admission import KEY, messages_of
from tests.support.ids import unique


async def stored_values(pool: AsyncConnectionPool, device: str) -> list[tuple[float]]:
    async with pool.connection() as conn:
        cur = await conn.execute("SELECT value_num FROM telemetry.points WHERE device_id = %s", (device,))
        return await cur.fetchall()


async def publish_point(nc: Client, validator: PointsValidator, device: str) -> None:
    body = msgspec.json.encode(
        {"device_id": device, "points": [{"timestamp": "2031-02-01T00:00:00Z", "metric_name": "t", "value": 4.5},
                                         {"timestamp": "2031-02-01T00:05:00Z", "metric_name": "h", "value": 1.0}]}
    )  # fmt: skip
    await nc.jetstream().publish(points_subject(device), body, headers={SIGNATURE: validator.signature(body)})


async def test_the_batch_is_announced_with_its_device_metrics_and_span(
    nc: Client, pool: AsyncConnectionPool, settings: Settings
) -> None:
    validator, device = PointsValidator(KEY), unique("dev")
    seen: list[PointsStoring] = []
    listener = await nats.connect(settings.nats_url)

    async def on_storing(msg: nats.aio.msg.Msg) -> None:
        announced = msgspec.json.decode(msg.data, type=PointsStoring)
        if any(m.device_id == device for m in announced.messages):
            seen.append(announced)

    await listener.subscribe(STORING_SUBJECT, cb=on_storing)
    await flush(listener)
    try:
        handler = IngestHandler(pool, nc.jetstream(), EventsOut(nc, settings.event_prefix), structlog.get_logger(),
                                validator, nc)  # fmt: skip
        await publish_point(nc, validator, device)
        assert await handler(await messages_of(nc, device, at_most=1)) == []
        assert sorted(await stored_values(pool, device)) == [(1.0,), (4.5,)]
        await flush(listener)
    finally:
        await listener.close()
    # That it reaches the gateways before the commit is visible is proven end to end (tests/e2e/
    # test_query_cache_reads.py, never older than the database): a subscriber here may run after the commit.
    # A stack's ingest worker on the same servers (e2e tests in this process) may store and announce it too.
    assert len(seen) >= 1
    (message,) = [m for m in seen[0].messages if m.device_id == device]
    assert sorted(message.metric_names) == ["h", "t"]
    assert (message.first_time.isoformat(), message.last_time.isoformat()) == (
        "2031-02-01T00:00:00+00:00", "2031-02-01T00:05:00+00:00"
    )  # fmt: skip


async def test_a_batch_that_cannot_be_announced_fails_to_be_retried(
    nc: Client, pool: AsyncConnectionPool, settings: Settings
) -> None:
    """Its transaction rolls back (tests/integration/test_writer.py: a failing before_commit); the runtime retries."""
    broken = await nats.connect(settings.nats_url)
    await broken.close()  # every publish on it raises: the gateways would not hear of the transaction
    validator, device = PointsValidator(KEY), unique("dev")
    handler = IngestHandler(pool, nc.jetstream(), EventsOut(nc, settings.event_prefix), structlog.get_logger(),
                            validator, broken)  # fmt: skip
    await publish_point(nc, validator, device)
    with pytest.raises(TransientError, match="could not announce"):
        await handler(await messages_of(nc, device, at_most=1))
    assert handler.points_written == 0
