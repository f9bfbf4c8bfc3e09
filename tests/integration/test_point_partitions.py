"""Server-side partitioning of POINTS against a real NATS: each alert partition receives only its devices."""

from collections.abc import AsyncIterator
from pathlib import Path

import nats
import pytest
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig, StreamConfig
from nats.js.errors import NoStreamResponseError

from alert_worker.evaluator import partition_of
from telemetry_core.embedded import start_nats
from telemetry_core.settings import Settings
from telemetry_core.topology import (
    INGEST,
    POINTS_STREAM,
    alert_engine_consumer,
    device_of_points_subject,
    ensure_topology,
    points_subject,
    slot_of,
)

DEVICES = [f"dev-{i}" for i in range(40)]


@pytest.fixture
async def js(tmp_path: Path) -> AsyncIterator[JetStreamContext]:
    """A private NATS: these tests need POINTS in states the shared server must never be in."""
    server = start_nats(tmp_path / "nats")
    nc = await nats.connect(server.url)
    try:
        yield nc.jetstream()
    finally:
        await nc.close()
        server.stop()


async def received(js: JetStreamContext, durable: str) -> list[str]:
    sub = await js.pull_subscribe_bind(durable, POINTS_STREAM)
    subjects: list[str] = []
    while True:
        try:
            msgs = await sub.fetch(100, timeout=0.5)
        except TimeoutError:  # nats' TimeoutError is one too
            return subjects
        subjects += [m.subject for m in msgs]
        for m in msgs:
            await m.ack()


async def test_each_partition_consumer_receives_only_its_devices(js: JetStreamContext) -> None:
    await ensure_topology(js, Settings())
    for device in DEVICES:
        ack = await js.publish(points_subject(device), b"{}")
        stored = await js.get_msg(POINTS_STREAM, ack.seq)
        assert stored.subject == f"telemetry.points.{slot_of(device)}.{device}"  # the server's slot = ours
    partitions = 3
    seen: list[str] = []
    for p in range(partitions):
        spec = alert_engine_consumer(p, partitions)
        await js.add_consumer(spec.stream, spec.config())
        devices = [device_of_points_subject(s) for s in await received(js, spec.durable)]
        assert devices and all(partition_of(d, partitions) == p for d in devices), (p, devices)
        seen += devices
    assert sorted(seen) == sorted(DEVICES)  # every device reaches exactly one partition


async def test_a_publisher_cannot_choose_a_slot(js: JetStreamContext) -> None:
    await ensure_topology(js, Settings())
    with pytest.raises(NoStreamResponseError):
        await js.publish(f"telemetry.points.{(slot_of('dev-1') + 1) % 64}.dev-1", b"{}", timeout=1.0)


async def test_an_old_stream_is_migrated_and_keeps_its_messages(js: JetStreamContext) -> None:
    # POINTS and consumers as the topology before slots created them, with a message in the stream.
    await js.add_stream(StreamConfig(name=POINTS_STREAM, subjects=["telemetry.points.>"]))
    old = "dev-old"
    await js.publish(points_subject(old), b"{}")
    for durable in (INGEST.durable, "alerts_0_of_2", "alerts_1_of_2"):
        await js.add_consumer(
            POINTS_STREAM,
            ConsumerConfig(durable_name=durable, filter_subject="telemetry.points.>", ack_policy=AckPolicy.EXPLICIT),
        )
    await ensure_topology(js, Settings())
    for p in range(2):
        spec = alert_engine_consumer(p, 2)
        await js.add_consumer(spec.stream, spec.config())  # as the alert worker does at start
    new = [d for d in DEVICES if partition_of(d, 2) != partition_of(old, 2)][:1] + [d for d in DEVICES[:4]]
    for device in new:
        await js.publish(points_subject(device), b"{}")
    assert [device_of_points_subject(s) for s in await received(js, INGEST.durable)] == [old, *new]
    for p in range(2):
        subjects = await received(js, f"alerts_{p}_of_2")
        # The old message (no slot in its subject) reaches both partitions; the engine sorts it by slot.
        assert subjects[0] == points_subject(old)
        assert [device_of_points_subject(s) for s in subjects[1:]] == [d for d in new if partition_of(d, 2) == p]
