"""The bytes of one stream message (a StreamMessage), assembled around points that are already JSON."""

from datetime import UTC, datetime

import msgspec

from gateway.live.coalescer import Flush


def message_bytes(subscription_id: str, flush: Flush, now: datetime | None = None) -> bytes:
    """A StreamMessage as JSON; ``device_id`` is null when the points come from several devices."""
    devices = {device for device, _ in flush.points}
    device = next(iter(devices)) if len(devices) == 1 else None
    head = {"subscription_id": subscription_id, "device_id": device}
    tail = {"timestamp": now or datetime.now(UTC), "sequence_number": flush.sequence, "dropped": flush.dropped}
    return b"".join((
        msgspec.json.encode(head)[:-1], b',"data_points":[', b",".join(p for _, p in flush.points), b"],",
        msgspec.json.encode(tail)[1:],
    ))  # fmt: skip
