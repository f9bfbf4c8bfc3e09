"""The alert engine dead-letters a POINTS message it cannot decode (it used to ack it silently)."""

import nats
import pytest

from telemetry_core.topology import DLQ_STREAM, alert_engine_consumer, dlq_subject, points_subject
from telemetry_schemas.codecs import dead_letter_decoder
from tests.support.ids import unique
from tests.support.stack import Stack

pytestmark = pytest.mark.e2e


async def test_an_undecodable_points_message_is_dead_lettered_by_the_alert_engine(stack: Stack) -> None:
    device, worker = unique("dev"), alert_engine_consumer(0, 1).durable  # the stack runs one partition
    nc = await nats.connect(stack.servers.nats_url)
    js = nc.jetstream()
    try:
        ack = await js.publish(points_subject(device), b"not json at all")
        sub = await js.subscribe(dlq_subject(worker), stream=DLQ_STREAM, ordered_consumer=True)
        try:
            while True:
                letter = dead_letter_decoder.decode((await sub.next_msg(timeout=15)).data)
                if letter.subject == points_subject(device):
                    break
        finally:
            await sub.unsubscribe()
        assert (letter.worker, letter.stream_seq, letter.payload) == (worker, ack.seq, "not json at all")
        assert letter.reason.startswith("not a RecordPoints message: JSON is malformed")
    finally:
        await nc.close()
