"""Publish points straight onto the telemetry service's JetStream, as a device gateway would.

Needs only nats-py (`pip install nats-py`). The message is the RecordPoints JSON of
../record_points.schema.json on subject telemetry.points.<device_id> (../asyncapi.json):

    python publish_points.py --nats-url nats://127.0.0.1:4222 --device sensor_7 \
        --metric temperature --value 21.5 --unit celsius --count 3

Each batch carries a Nats-Msg-Id, so a retry after a lost acknowledgement is stored once. A 'stored'
line means JetStream has the message (fsynced with the service's configuration); the ingest worker
writes its points to PostgreSQL moments later, or dead-letters invalid points to telemetry.dlq.ingest.
"""

import argparse
import asyncio
import json
import os
import uuid
from datetime import UTC, datetime, timedelta

import nats


def batch(device: str, metric: str, value: float, unit: str | None, count: int, start: datetime) -> dict:
    """One RecordPoints message: ``count`` points one second apart."""
    points = []
    for i in range(count):
        point = {
            "timestamp": (start + timedelta(seconds=i)).isoformat().replace("+00:00", "Z"),
            "metric_name": metric,
            "value": value + i,
        }
        if unit:
            point["unit"] = unit
        points.append(point)
    return {"device_id": device, "points": points}


async def publish(args: argparse.Namespace) -> None:
    """Connect, publish one batch with JetStream, print the acknowledgement."""
    nc = await nats.connect(args.nats_url)
    try:
        js = nc.jetstream()
        start = datetime.fromisoformat(args.start.replace("Z", "+00:00")) if args.start else datetime.now(UTC)
        body = json.dumps(batch(args.device, args.metric, args.value, args.unit, args.count, start)).encode()
        msg_id = f"{args.device}:{uuid.uuid4().hex}"
        ack = await js.publish(f"telemetry.points.{args.device}", body, headers={"Nats-Msg-Id": msg_id}, timeout=5)
        print(f"stored: stream {ack.stream} sequence {ack.seq} ({args.count} point(s), Nats-Msg-Id {msg_id})")
    finally:
        await nc.close()


def main() -> None:
    """Parse arguments and publish."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nats-url", default=os.environ.get("NATS_URL", "nats://127.0.0.1:4222"))
    parser.add_argument("--device", required=True, help="device id: A-Z a-z 0-9 _ - : (1-128)")
    parser.add_argument("--metric", default="temperature")
    parser.add_argument("--value", type=float, default=21.5)
    parser.add_argument("--unit", default=None)
    parser.add_argument("--count", type=int, default=1, help="points in the batch (one second apart)")
    parser.add_argument("--start", help="RFC 3339 time of the first point (default: now)")
    asyncio.run(publish(parser.parse_args()))


if __name__ == "__main__":
    main()
