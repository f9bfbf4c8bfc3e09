"""An unreadable POINTS message: dead-lettered once, by the ingest worker; the alert engine moves past it.

One verdict serves every consumer of POINTS (telemetry_core/points_validator.py): the alert engine only
evaluates signed (admitted) messages, so it neither evaluates nor dead-letters a second time what the
ingest worker rejected, and it does not stall on it either.
"""

import nats
import psycopg
import pytest

from telemetry_core.topology import (
    DLQ_STREAM,
    POINTS_STREAM,
    alert_engine_consumer,
    device_of_points_subject,
    dlq_subject,
    points_subject,
)
from telemetry_schemas.codecs import dead_letter_decoder
from tests.support.eventually import eventually
from tests.support.ids import unique
from tests.support.stack import Stack

pytestmark = pytest.mark.e2e


def _engine_checkpoint(stack: Stack) -> int:
    durable = alert_engine_consumer(0, 1).durable  # the stack runs one partition
    with psycopg.connect(stack.servers.database_url) as conn:
        row = conn.execute(
            "SELECT last_seq FROM telemetry.projection_checkpoints WHERE projection = %s AND stream = %s",
            (durable, POINTS_STREAM),
        ).fetchone()
    return row[0] if row else 0


async def test_an_unreadable_points_message_is_dead_lettered_once_and_passed_by_the_engine(stack: Stack) -> None:
    device = unique("dev")
    nc = await nats.connect(stack.servers.nats_url)
    js = nc.jetstream()
    try:
        ack = await js.publish(points_subject(device), b"not json at all")
        sub = await js.subscribe("telemetry.dlq.>", stream=DLQ_STREAM, ordered_consumer=True)
        letters = []
        try:
            while not any(letter.worker == "ingest" for letter in letters):
                letter = dead_letter_decoder.decode((await sub.next_msg(timeout=15)).data)
                if device_of_points_subject(letter.subject) == device:
                    letters.append(letter)
            # The engine has passed the message (its checkpoint is beyond it) without a letter of its own.
            eventually(lambda: _engine_checkpoint(stack) >= ack.seq, timeout=15, what="alert engine past the message")
            while True:  # drain what arrived meanwhile
                try:
                    letter = dead_letter_decoder.decode((await sub.next_msg(timeout=0.5)).data)
                except nats.errors.TimeoutError:
                    break
                if device_of_points_subject(letter.subject) == device:
                    letters.append(letter)
        finally:
            await sub.unsubscribe()
        assert [(letter.worker, letter.stream_seq, letter.payload) for letter in letters] == [
            ("ingest", ack.seq, "not json at all")
        ]
        assert letters[0].reason.startswith("not a RecordPoints message: JSON is malformed")
        assert dlq_subject("ingest") == "telemetry.dlq.ingest"
    finally:
        await nc.close()
