"""Commands carried on the POINTS stream."""

import msgspec

from telemetry_schemas.base import StreamMessage
from telemetry_schemas.fields import BatchId, DeviceId
from telemetry_schemas.values import Point


class RecordPoints(StreamMessage, frozen=True):
    """One device's batch of points; the body of a message on telemetry.points.<device_id>.

    ``points`` are kept as raw JSON so that each one is validated on its own: one bad point in a
    directly published message goes to the dead-letter subject without taking the others with it.
    """

    device_id: DeviceId
    points: list[msgspec.Raw]
    batch_id: BatchId | None = None
    request_id: str | None = None


class ValidatedPoints(StreamMessage, frozen=True):
    """The same message read with typed points, for messages whose points were already validated."""

    device_id: DeviceId
    points: list[Point]
