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
