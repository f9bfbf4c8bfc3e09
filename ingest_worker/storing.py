"""Before an ingest transaction commits: tell the gateways which series and ranges it is about to write.

The gateways' query caches (gateway/query_cache.py) keep answers computed from the points and rollups this
transaction writes. Its stored notice comes after the commit, so without this a client could read the new points
through one gateway while another still answers from its cache. Announced here first, on core NATS, and flushed:
once the flush returns, nats-server has routed the announcement to every gateway's subscription, before the commit
can be seen. A gateway holds those ranges out of its cache until the stored notice of the same POINTS sequence (or
an expiry, if this transaction never commits and is not redelivered).
"""

import msgspec
from nats.aio.client import Client

from telemetry_core.nats_flush import flush
from telemetry_core.topology import STORING_SUBJECT
from telemetry_schemas.notices import MessageStoring, PointsStoring
from telemetry_schemas.values import Point

FLUSH_TIMEOUT_S = 5.0
_encode = msgspec.json.Encoder().encode


def storing(batches: list[tuple[str, int, list[Point]]]) -> PointsStoring:
    """Per POINTS message of the transaction: its device, metrics and span (the builtins loop, not Python)."""
    messages: list[MessageStoring] = []
    for device_id, seq, points in batches:
        times = [p.timestamp for p in points]
        metrics = list({p.metric_name for p in points})
        messages.append(MessageStoring(device_id, metrics, min(times), max(times), seq))
    return PointsStoring(messages)


async def announce_storing(nc: Client, batches: list[tuple[str, int, list[Point]]]) -> None:
    """Publish what the transaction writes and wait until nats-server has it (raises if NATS is away)."""
    await nc.publish(STORING_SUBJECT, _encode(storing(batches)))
    await flush(nc, FLUSH_TIMEOUT_S)
