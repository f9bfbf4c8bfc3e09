"""A point publish rides through a NATS outage shorter than its timeout, and a retry is never a second copy.

Also: a process asked for more stream replicas than its NATS has servers refuses before creating anything.
"""

import asyncio
import contextlib
from pathlib import Path

import nats
import pytest
from nats.js.api import StreamConfig
from nats.js.errors import NotFoundError

from gateway.publish_retry import publish_retrying
from gateway.publisher import CommandPublisher, SequenceConflictError
from telemetry_core.embedded import start_nats
from telemetry_core.errors import ConfigurationError
from telemetry_core.headers import MSG_ID
from telemetry_core.points_validator import PointsValidator
from telemetry_core.settings import Settings
from telemetry_core.topology import ensure_topology, event_subject

STREAM, SUBJECT = "RIDE", "ride.points"


async def test_a_publish_retried_across_a_restart_is_stored_once(tmp_path: Path) -> None:
    server = start_nats(tmp_path / "nats")
    nc = await nats.connect(server.url, reconnect_time_wait=0.1, max_reconnect_attempts=-1)
    js = nc.jetstream()
    try:
        await js.add_stream(StreamConfig(name=STREAM, subjects=[SUBJECT], duplicate_window=60.0))
        headers = {MSG_ID: "dev-1:batch-1:abc"}
        server.kill()
        await asyncio.sleep(0.2)  # the client notices: the attempts below are buffered until the reconnect
        publish = asyncio.create_task(publish_retrying(nc, SUBJECT, b"points", headers, timeout_s=8.0))
        await asyncio.sleep(3.0)  # past the first attempt's third of the timeout: a second attempt is buffered
        server.restart()
        ack, attempts = await publish
        assert attempts == 2
        # Both attempts reached the server after the reconnect: the first was stored, the second (the one
        # awaited) was answered as its duplicate, thanks to the shared message id.
        assert ack.duplicate
        assert (await js.stream_info(STREAM)).state.messages == 1
        again, _ = await publish_retrying(nc, SUBJECT, b"points", headers, timeout_s=2.0)
        assert again.duplicate and again.seq == ack.seq
        assert (await js.stream_info(STREAM)).state.messages == 1
    finally:
        await nc.close()
        server.stop()


async def test_an_outage_longer_than_the_timeout_fails_the_publish(tmp_path: Path) -> None:
    server = start_nats(tmp_path / "nats")
    nc = await nats.connect(server.url, reconnect_time_wait=0.1, max_reconnect_attempts=-1)
    js = nc.jetstream()
    try:
        await js.add_stream(StreamConfig(name=STREAM, subjects=[SUBJECT]))
        server.kill()
        with pytest.raises((TimeoutError, nats.errors.TimeoutError, ConnectionError)):
            await publish_retrying(nc, SUBJECT, b"points", {MSG_ID: "x"}, timeout_s=0.8)
    finally:
        with contextlib.suppress(Exception):  # closing towards a dead server may raise
            await nc.close()
        server.stop()


async def test_more_replicas_than_servers_stops_before_any_stream_is_made(tmp_path: Path) -> None:
    server = start_nats(tmp_path / "nats")
    nc = await nats.connect(server.url)
    try:
        with pytest.raises(ConfigurationError, match="TELEMETRY_STREAM_REPLICAS=3 but the NATS deployment has 1"):
            await ensure_topology(nc.jetstream(), Settings(stream_replicas=3))
        with pytest.raises(NotFoundError):
            await nc.jetstream().stream_info("POINTS")
    finally:
        await nc.close()
        server.stop()


async def test_an_event_retried_across_a_restart_is_stored_once_and_not_a_conflict(tmp_path: Path) -> None:
    """The first attempt is stored after the reconnect, the second is refused for its expected sequence: the
    publisher recognises its own message id as the subject's last event and answers with it, not a 409."""
    server = start_nats(tmp_path / "nats")
    nc = await nats.connect(server.url, reconnect_time_wait=0.1, max_reconnect_attempts=-1)
    js = nc.jetstream()
    try:
        await ensure_topology(js, Settings())
        publisher = CommandPublisher(nc, js, 8.0, PointsValidator("k" * 32))

        async def sent_before_the_loss(timeout_s: float) -> float:
            return timeout_s  # as for a request whose first attempt left just before the connection broke

        publisher._connected_within = sent_before_the_loss  # type: ignore[method-assign]
        subject = event_subject("metric", "ride")
        server.kill()
        await asyncio.sleep(0.2)  # the client notices: the attempts below are buffered until the reconnect
        publish = asyncio.create_task(publisher.publish_event(subject, {"kind": "created"}, 0, "req-1"))  # type: ignore[arg-type]
        await asyncio.sleep(3.0)  # past the first attempt's share of the timeout: a second attempt is buffered too
        server.restart()
        seq = await publish
        assert (await js.stream_info("EVENTS")).state.messages == 1
        assert (await js.get_last_msg("EVENTS", subject)).seq == seq
        # A real conflict (another writer's expected sequence) is still one.
        with pytest.raises(SequenceConflictError):
            await publisher.publish_event(subject, {"kind": "created"}, 0, "req-2")  # type: ignore[arg-type]
    finally:
        await nc.close()
        server.stop()
