"""Publish to JetStream, retrying within one deadline: how a request rides through a node loss or election.

When the NATS node a gateway uses dies, the client reconnects to another node; when it was a stream's
leader, the stream elects a new one. Either way a publish sees no answer (timeout) or "no responders" /
503 for a few hundred milliseconds to seconds. Retrying within the request's publish timeout turns most
of those into a 200 instead of a 503. Every attempt carries the same headers, so the same
``Nats-Msg-Id``: when an attempt was stored but its acknowledgement was lost, the retry is answered as a
duplicate of it (within the stream's duplicate window) and the points are stored once.
"""

import asyncio
import time

from nats.aio.client import Client
from nats.errors import ConnectionReconnectingError, OutboundBufferLimitError, StaleConnectionError
from nats.errors import TimeoutError as NatsTimeoutError
from nats.js.api import PubAck
from nats.js.errors import NoStreamResponseError
from nats.js.errors import ServiceUnavailableError as JetStreamUnavailable

from gateway.js_publish import jetstream_publish

# Pause between attempts: long enough not to spin while the client reconnects, short against a ~2 s timeout.
RETRY_PAUSE_S = 0.1
# Each attempt waits at most a third of the timeout (and at least this), so a publish that went to a node
# that just died is retried on the new connection before the whole timeout is used up.
MIN_ATTEMPT_S = 0.25
# Failures after which the same message may be sent again (no answer, no stream leader, a connection that
# broke under the write: ConnectionError is the socket's own); anything else, such as a refusal, is final.
RETRYABLE = (
    TimeoutError, NatsTimeoutError, NoStreamResponseError, JetStreamUnavailable, ConnectionReconnectingError,
    OutboundBufferLimitError, StaleConnectionError, ConnectionError,
)  # fmt: skip


async def publish_retrying(
    nc: Client, subject: str, body: bytes, headers: dict[str, str], timeout_s: float
) -> tuple[PubAck, int]:
    """Publish until acknowledged or ``timeout_s`` has passed; return the ack and how many attempts it took.

    The caller must put a ``Nats-Msg-Id`` in ``headers`` (a retry is otherwise a second copy). Raises the
    last attempt's error when time runs out, or at once for an error no retry can change.
    """
    deadline = time.monotonic() + timeout_s
    per_attempt = max(timeout_s / 3, MIN_ATTEMPT_S)
    attempts = 0
    while True:
        attempts += 1
        remaining = deadline - time.monotonic()
        try:
            ack = await jetstream_publish(nc, subject, body, headers, max(min(per_attempt, remaining), 0.01))
            return ack, attempts
        except RETRYABLE:
            if deadline - time.monotonic() <= RETRY_PAUSE_S:
                raise
        await asyncio.sleep(RETRY_PAUSE_S)
