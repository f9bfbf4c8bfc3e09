"""Write the wire contracts as JSON Schema files into schemas/exported/ (`make schemas`).

Outside publishers (devices publishing straight onto JetStream, services reading our events)
build against these files; a unit test fails when they are stale.
"""

import json
import sys
from pathlib import Path
from typing import Any

import msgspec

from telemetry_schemas.api.ingest import BatchRequest
from telemetry_schemas.dead_letter import DeadLetter
from telemetry_schemas.events import DomainEvent
from telemetry_schemas.notices import PointsStored
from telemetry_schemas.values import Point


class RecordPointsSchema(msgspec.Struct, kw_only=True):
    """A message on telemetry.points.<device_id>: one device's batch of points (JSON).

    The subject's device id must equal ``device_id``. Each point is validated on its own; invalid
    points go to telemetry.dlq.ingest with the reason, valid ones are stored.
    """

    device_id: str
    points: list[Point]
    batch_id: str | None = None
    request_id: str | None = None


CONTRACTS: dict[str, Any] = {
    "record_points": RecordPointsSchema,
    "point": Point,
    "domain_event": DomainEvent,
    "points_stored": PointsStored,
    "dead_letter": DeadLetter,
    "batch_request": BatchRequest,
}


def render() -> dict[str, str]:
    """File name → JSON text of every exported schema."""
    return {
        f"{name}.schema.json": json.dumps(msgspec.json.schema(contract), indent=2, sort_keys=True) + "\n"
        for name, contract in CONTRACTS.items()
    }


def main(out_dir: str = "schemas/exported") -> None:
    """Write the files (used by `make schemas`)."""
    target = Path(out_dir)
    target.mkdir(parents=True, exist_ok=True)
    for name, text in render().items():
        (target / name).write_text(text)
    print(f"wrote {len(CONTRACTS)} schemas to {target}")


if __name__ == "__main__":
    main(*sys.argv[1:])
