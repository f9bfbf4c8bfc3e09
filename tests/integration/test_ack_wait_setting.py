"""TELEMETRY_ACK_WAIT reaches every durable consumer, including one that already exists."""

import os
import subprocess
import sys

import structlog
from nats.aio.client import Client
from nats.js.api import StorageType, StreamConfig

from telemetry_core.topology import ConsumerSpec, ensure_consumer
from tests.support.ids import unique


def _spec_ack_wait(value: str | None) -> subprocess.CompletedProcess[str]:
    """What a process started with TELEMETRY_ACK_WAIT=value builds its consumer specs with."""
    env = {k: v for k, v in os.environ.items() if k != "TELEMETRY_ACK_WAIT"}
    if value is not None:
        env["TELEMETRY_ACK_WAIT"] = value
    code = "from telemetry_core.topology import INGEST; print(INGEST.ack_wait_s)"
    return subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60)


def test_the_module_specs_take_the_setting_and_default_to_30_s() -> None:
    assert _spec_ack_wait(None).stdout.strip() == "30.0"
    assert _spec_ack_wait("4.5").stdout.strip() == "4.5"


def test_a_bad_value_stops_the_process_with_the_setting_named() -> None:
    done = _spec_ack_wait("0.1")
    assert done.returncode != 0
    assert "TELEMETRY_ACK_WAIT" in done.stderr


async def test_an_existing_consumer_is_updated_to_the_new_ack_wait(nc: Client) -> None:
    js = nc.jetstream()
    uid = unique("aw")
    stream = f"AW_{uid}"
    await js.add_stream(StreamConfig(name=stream, subjects=[f"aw.{uid}.>"], storage=StorageType.FILE))
    try:
        await js.add_consumer(stream, ConsumerSpec(stream, f"c_{uid}", f"aw.{uid}.>", ack_wait_s=30.0).config())
        # What a process restarted with another TELEMETRY_ACK_WAIT does in ensure_topology.
        await js.add_consumer(stream, ConsumerSpec(stream, f"c_{uid}", f"aw.{uid}.>", ack_wait_s=5.0).config())
        info = await js.consumer_info(stream, f"c_{uid}")
        assert info.config.ack_wait == 5.0
    finally:
        await js.delete_stream(stream)


async def test_a_process_that_changes_another_processes_ack_wait_says_so(nc: Client) -> None:
    js = nc.jetstream()
    uid = unique("awm")
    stream = f"AWM_{uid}"
    await js.add_stream(StreamConfig(name=stream, subjects=[f"awm.{uid}.>"], storage=StorageType.FILE))
    try:
        first = ConsumerSpec(stream, f"c_{uid}", f"awm.{uid}.>", ack_wait_s=30.0)
        with structlog.testing.capture_logs() as logs:
            await ensure_consumer(js, first)  # new: nothing to warn about
            await ensure_consumer(js, first)  # same value again: nothing either
        assert [e for e in logs if e["event"] == "consumer_ack_wait_changed"] == []
        with structlog.testing.capture_logs() as logs:
            await ensure_consumer(js, ConsumerSpec(stream, f"c_{uid}", f"awm.{uid}.>", ack_wait_s=5.0))
        warned = [e for e in logs if e["event"] == "consumer_ack_wait_changed"]
        assert [(e["consumer"], e["was_s"], e["now_s"]) for e in warned] == [(f"c_{uid}", 30.0, 5.0)]
        assert (await js.consumer_info(stream, f"c_{uid}")).config.ack_wait == 5.0
    finally:
        await js.delete_stream(stream)
