"""An alert engine answers "applied rule event N?" at once when it has, and the moment it does when not yet.

The request goes out on the real RULES_APPLIED subject, so every engine running on the shared test servers
may answer too; the test reads only the replies of its own (uniquely named) partition.
"""

import asyncio
import contextlib

import structlog
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.js.api import StorageType, StreamConfig

from alert_worker.rules_applied import AppliedResponder
from telemetry_core.follower import Follower
from telemetry_core.rules_applied import Applied, applied_decoder
from telemetry_core.topology import RULES_APPLIED
from tests.support.ids import unique

LOG = structlog.get_logger().bind(test="rules-applied")


async def _replies(nc: Client, seq: int, partition: str, wait_s: float) -> list[Applied]:
    """Ask once; collect this partition's replies for ``wait_s``."""
    got: list[Applied] = []
    answered = asyncio.Event()

    async def on_reply(msg: Msg) -> None:
        applied = applied_decoder.decode(msg.data)
        if applied.partition == partition:
            got.append(applied)
            answered.set()

    inbox = nc.new_inbox()
    sub = await nc.subscribe(inbox, cb=on_reply)
    await nc.publish(RULES_APPLIED, str(seq).encode(), reply=inbox)
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(answered.wait(), wait_s)
    await sub.unsubscribe()
    return got


async def test_an_engine_replies_once_it_has_applied_the_sequence(nc: Client) -> None:
    js, uid = nc.jetstream(), unique("ra")
    stream, subject = f"RA_{uid}", f"ra.{uid}"
    await js.add_stream(StreamConfig(name=stream, subjects=[f"{subject}.>"], storage=StorageType.FILE))
    applied: list[int] = []
    follower = Follower(js, stream, f"{subject}.>", bytes.decode, lambda _v, seq: applied.append(seq), LOG)
    partition = f"test_{uid}"
    responder = AppliedResponder(nc, partition, follower, LOG)
    try:
        first = (await js.publish(f"{subject}.a", b"one")).seq
        await follower.start()
        await follower.wait_for(first, 10.0)
        await responder.start()
        assert await _replies(nc, first, partition, 5.0) == [Applied(partition, first)]  # applied: at once

        # Not applied yet: no reply until the event exists and the follower applied it.
        pending = asyncio.ensure_future(_replies(nc, first + 1, partition, 10.0))
        await asyncio.sleep(0.3)
        assert not pending.done()
        second = (await js.publish(f"{subject}.b", b"two")).seq
        assert second == first + 1
        assert await pending == [Applied(partition, second)]
        assert applied == [first, second]
    finally:
        await responder.stop()
        await follower.stop()
        await js.delete_stream(stream)
