"""gateway/js_publish.py against a real JetStream: the ack and the errors nats-py's own publish gives."""

import uuid

import pytest
from nats.aio.client import Client
from nats.js.errors import APIError, NoStreamResponseError

from gateway.js_publish import jetstream_publish
from telemetry_core.headers import EXPECTED_LAST_SUBJECT_SEQ, MSG_ID
from telemetry_core.topology import EVENTS_STREAM


async def test_the_ack_names_stream_sequence_and_duplicates(nc: Client) -> None:
    subject = f"telemetry.events.metric.jspub-{uuid.uuid4().hex[:8]}"
    first = await jetstream_publish(nc, subject, b"{}", {MSG_ID: f"a-{subject}"}, 5.0)
    again = await jetstream_publish(nc, subject, b"{}", {MSG_ID: f"a-{subject}"}, 5.0)
    other = await jetstream_publish(nc, subject, b"{}", {MSG_ID: f"b-{subject}"}, 5.0)
    reference = await nc.jetstream().publish(subject, b"{}", headers={MSG_ID: f"b-{subject}"})
    assert (first.stream, bool(first.duplicate), first.seq > 0) == (EVENTS_STREAM, False, True)
    assert (again.seq, again.duplicate) == (first.seq, True)
    assert other.seq > first.seq and not other.duplicate
    assert (reference.seq, reference.duplicate) == (other.seq, again.duplicate)  # what nats-py answers


async def test_a_refusal_raises_the_api_error_with_its_code(nc: Client) -> None:
    subject = f"telemetry.events.metric.jspub-{uuid.uuid4().hex[:8]}"
    await jetstream_publish(nc, subject, b"{}", {MSG_ID: uuid.uuid4().hex}, 5.0)
    with pytest.raises(APIError) as refused:
        await jetstream_publish(nc, subject, b"{}", {EXPECTED_LAST_SUBJECT_SEQ: "0", MSG_ID: uuid.uuid4().hex}, 5.0)
    assert refused.value.err_code == 10071  # wrong last sequence: gateway/publisher.py's conflict


async def test_a_subject_no_stream_takes_is_no_stream_response(nc: Client) -> None:
    with pytest.raises(NoStreamResponseError):
        await jetstream_publish(nc, f"nowhere.{uuid.uuid4().hex}", b"x", {MSG_ID: "x"}, 2.0)
