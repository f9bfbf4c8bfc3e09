"""A message a worker could not process, copied to telemetry.dlq.<worker> with the reason."""

from datetime import datetime

from telemetry_schemas.base import StreamMessage


class DeadLetter(StreamMessage, frozen=True):
    """Why a message (or part of it) was rejected, with enough to find and replay it."""

    worker: str
    reason: str
    subject: str
    stream_seq: int | None
    failed_at: datetime
    payload: str
    # Added later (optional, so older letters still decode): the original message's NATS headers, and its
    # body in base64 when that body was not UTF-8 text (MessagePack), so `telemetry dlq retry` re-sends the exact bytes.
    headers: dict[str, str] | None = None
    payload_b64: str | None = None
