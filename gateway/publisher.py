"""CommandPublisher: publish to JetStream and return only after the PubAck."""

import asyncio
import hashlib
import time
import uuid
from collections.abc import Sequence

from nats.aio.client import Client
from nats.errors import Error as NatsError
from nats.errors import NoRespondersError
from nats.errors import TimeoutError as NatsTimeoutError
from nats.js import JetStreamContext
from nats.js.errors import APIError, NotFoundError

from gateway.errors import ApiError
from gateway.metrics import POINTS_ACCEPTED, PUBLISH_RETRIES, PUBLISH_SECONDS
from gateway.publish_retry import publish_retrying
from gateway.unique_ids import new_id
from telemetry_core.errors import ServiceUnavailableError
from telemetry_core.headers import EXPECTED_LAST_SUBJECT_SEQ, MSG_ID, REQUEST_ID, SIGNATURE
from telemetry_core.points_validator import PointsValidator, points_body
from telemetry_core.topology import EVENTS_STREAM, POINTS_STREAM, points_subject
from telemetry_schemas.codecs import json_encoder
from telemetry_schemas.events import DomainEvent

# JetStream's error code for "Nats-Expected-Last-Subject-Sequence did not match".
WRONG_LAST_SEQUENCE = 10071
# How often a publish waiting for the connection looks again (reconnects take from milliseconds to a second).
RECONNECT_POLL_S = 0.05
# Room for the headers (request id, signature, message id) within the broker's max_payload.
_HEADER_ALLOWANCE = 1024


class SequenceConflictError(Exception):
    """Another writer changed the subject first (e.g. two gateways creating one metric)."""


class CommandPublisher:
    """Publishes commands; a request succeeds only once JetStream has acknowledged it."""

    def __init__(self, nc: Client, js: JetStreamContext, timeout_s: float, validator: PointsValidator) -> None:
        self._nc = nc
        self._js = js
        self._timeout_s = timeout_s
        self._validator = validator

    async def _connected_within(self, timeout_s: float) -> float:
        """Wait up to ``timeout_s`` for the connection; return the time left of it, or raise ServiceUnavailableError.

        A reconnect to another cluster node takes a moment: a request arriving meanwhile waits for it.
        """
        deadline = time.monotonic() + timeout_s
        while not self._nc.is_connected:
            if time.monotonic() >= deadline:
                self._require_connected()
            await asyncio.sleep(RECONNECT_POLL_S)
        return max(deadline - time.monotonic(), 0.05)

    def _require_connected(self) -> None:
        if not self._nc.is_connected:
            raise ServiceUnavailableError("NATS is unavailable: the gateway is not connected; retry shortly")

    async def publish_points(
        self, device_id: str, raw_points: Sequence[bytes], batch_id: str | None, request_id: str | None
    ) -> None:
        """Publish one device's valid points as a RecordPoints message.

        With a ``batch_id``, the message id is the batch id plus a hash of the points, so a retry of
        the same batch is stored once while a corrected re-send under the same id is not lost.
        Without one the message id is random, new for each call: every request is its own message (re-sent
        identical points upsert harmlessly), and a client re-using X-Request-Id can never have data
        de-duplicated away. Either way this call's own retries (publish_retry.py) share the id.
        """
        remaining = await self._connected_within(self._timeout_s)
        body = points_body(device_id, raw_points, batch_id, request_id)
        # These points were admitted here (shape and metric definitions): the signature tells every
        # consumer so, and cannot be set by a publisher without the key.
        headers = {SIGNATURE: self._validator.signature(body)}
        if request_id is not None:  # a client's own id (gateway/deps.py traced_request_id): the workers log it
            headers[REQUEST_ID] = request_id
        if batch_id is not None:
            digest = hashlib.blake2b(b",".join(raw_points), digest_size=12).hexdigest()
            headers[MSG_ID] = f"{device_id}:{batch_id}:{digest}"
        else:
            headers[MSG_ID] = f"{device_id}:once:{new_id()}"
        # One device's points are one message (stored in one transaction); the broker refuses a message over
        # its max_payload, which no retry can change: say so instead of a 503 that invites retries.
        limit = self._nc.max_payload
        if len(body) + _HEADER_ALLOWANCE > limit:
            raise ApiError(
                413,
                f"the points for device {device_id!r} make a {len(body)}-byte message; the broker accepts at most "
                f"{limit} bytes per device per request: send fewer points per request",
            )
        start = time.perf_counter()
        try:
            _ack, attempts = await publish_retrying(self._nc, points_subject(device_id), body, headers, remaining)
            PUBLISH_SECONDS.observe(time.perf_counter() - start)
            if attempts > 1:
                PUBLISH_RETRIES.inc(attempts - 1)
            POINTS_ACCEPTED.inc(len(raw_points))
        except (TimeoutError, NatsTimeoutError, NoRespondersError, NatsError, ConnectionError) as exc:
            raise ServiceUnavailableError(
                f"NATS JetStream did not acknowledge the points within {self._timeout_s}s ({type(exc).__name__}); "
                "nothing was stored, retry the request"
            ) from None

    async def publish_event(self, subject: str, event: DomainEvent, expected_last_seq: int, request_id: str) -> int:
        """Publish a domain event only if ``subject``'s last sequence is still ``expected_last_seq``.

        Returns the event's stream sequence. Raises SequenceConflictError when another writer won.
        """
        remaining = await self._connected_within(self._timeout_s)
        # A message id of this call alone: its retries (publish_retry.py) are de-duplicated, never another call.
        msg_id = f"event:{uuid.uuid4().hex}"
        headers = {EXPECTED_LAST_SUBJECT_SEQ: str(expected_last_seq), REQUEST_ID: request_id, MSG_ID: msg_id}
        try:
            ack, _attempts = await publish_retrying(self._nc, subject, json_encoder.encode(event), headers, remaining)
        except APIError as exc:
            if exc.err_code == WRONG_LAST_SEQUENCE:
                # A single server checks the expected sequence before the message id: a retry of an attempt that
                # was stored (its acknowledgement lost) is refused like a conflict. Ours is then the last one.
                ours = await self._own_last_event(subject, msg_id)
                if ours is not None:
                    return ours
                raise SequenceConflictError(str(exc)) from None
            raise ServiceUnavailableError(f"NATS JetStream rejected the event: {exc}") from None
        except (TimeoutError, NatsTimeoutError, NoRespondersError, NatsError, ConnectionError) as exc:
            raise ServiceUnavailableError(
                f"NATS JetStream did not acknowledge within {self._timeout_s}s ({type(exc).__name__}); retry"
            ) from None
        return int(ack.seq)

    async def _own_last_event(self, subject: str, msg_id: str) -> int | None:
        """The sequence of ``subject``'s last event when it carries ``msg_id`` (this call stored it), else None."""
        try:
            msg = await self._js.get_last_msg(EVENTS_STREAM, subject)
        except Exception:  # not found, or no answer: not provably ours, so a conflict
            return None
        return int(msg.seq or 0) if (msg.headers or {}).get(MSG_ID) == msg_id else None

    async def last_on_subject(self, stream: str, subject: str) -> tuple[int, bytes] | None:
        """(sequence, data) of the last message on ``subject``, or None when it has none."""
        self._require_connected()
        try:
            msg = await self._js.get_last_msg(stream, subject)
        except NotFoundError:
            return None
        except (TimeoutError, NatsTimeoutError, NoRespondersError, NatsError) as exc:
            raise ServiceUnavailableError(f"NATS JetStream did not answer ({type(exc).__name__}); retry") from None
        return int(msg.seq or 0), bytes(msg.data or b"")

    async def points_position(self) -> int:
        """POINTS' last sequence now: a rule change takes effect after it (telemetry_schemas/events.py)."""
        self._require_connected()
        try:
            info = await self._js.stream_info(POINTS_STREAM)
        except (TimeoutError, NatsTimeoutError, NoRespondersError, NatsError, APIError) as exc:
            raise ServiceUnavailableError(f"NATS JetStream did not answer ({type(exc).__name__}); retry") from None
        return int(info.state.last_seq or 0)

    async def first_on_subject(self, stream: str, subject: str) -> tuple[int, bytes] | None:
        """(sequence, data) of the first message on ``subject``, or None when it has none."""
        self._require_connected()
        try:
            msg = await self._js.get_msg(stream, seq=1, subject=subject, next=True)
        except NotFoundError:
            return None
        except (TimeoutError, NatsTimeoutError, NoRespondersError, NatsError) as exc:
            raise ServiceUnavailableError(f"NATS JetStream did not answer ({type(exc).__name__}); retry") from None
        return int(msg.seq or 0), bytes(msg.data or b"")
