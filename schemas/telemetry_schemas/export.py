"""Write the wire contracts as JSON Schema files into schemas/exported/ (`make schemas`).

Outside publishers (devices publishing straight onto JetStream, services reading our events)
build against these files; a unit test fails when they are stale.
"""

import inspect
import json
import sys
from pathlib import Path
from typing import Any

import msgspec
import msgspec.inspect as mi

from telemetry_schemas.api.ingest import BatchRequest
from telemetry_schemas.dead_letter import DeadLetter
from telemetry_schemas.events import AlertResolved, AlertRuleCreated, AlertTriggered, DomainEvent, MetricDefined
from telemetry_schemas.integration import DataReceived, DeviceDeleted, UserDeleted
from telemetry_schemas.notices import PointsStored, StoredNotices
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
    "stored_notices": StoredNotices,
    "dead_letter": DeadLetter,
    "batch_request": BatchRequest,
    # Platform events on core NATS, <prefix>.<name> (FR-019): one file per subject.
    "event_data_received": DataReceived,
    "event_metric_defined": MetricDefined,
    "event_alert_rule_created": AlertRuleCreated,
    "event_alert_triggered": AlertTriggered,
    "event_alert_resolved": AlertResolved,
    # Platform events this service consumes (FR-020), on configurable subjects.
    "consumed_device_deleted": DeviceDeleted,
    "consumed_user_deleted": UserDeleted,
}


def _named_types(contract: Any) -> dict[str, type]:
    """Every class reachable from ``contract`` by the name msgspec gives its ``$defs`` entry."""
    found: dict[str, type] = {}

    def walk(t: Any) -> None:
        if isinstance(t, tuple | list):
            for item in t:
                walk(item)
            return
        if not isinstance(t, mi.Type):
            return
        cls = getattr(t, "cls", None)
        if isinstance(cls, type):
            if found.get(cls.__name__) is cls:
                return  # already walked (recursive types)
            found[cls.__name__] = cls
        for field in getattr(t, "fields", ()):
            walk(field.type)
        for value in msgspec.structs.astuple(t):
            if value is not cls:
                walk(value)

    walk(mi.type_info(contract))
    return found


def describe(schema: dict[str, Any], contract: Any) -> dict[str, Any]:
    """Set every definition's ``title`` (its name) and ``description`` (its class docstring, ``inspect.cleandoc``).

    msgspec's own rendering of docstrings changed between releases (raw in 0.18, dedented in 0.19+), so the
    exported text is made here from the source the project controls, not by the installed msgspec.
    """
    classes = _named_types(contract)
    for name, definition in schema.get("$defs", {}).items():
        definition["title"] = name
        definition.pop("description", None)
        doc = classes[name].__dict__.get("__doc__") if name in classes else None
        if doc:
            definition["description"] = inspect.cleandoc(doc)
    return schema


def render() -> dict[str, str]:
    """File name → JSON text of every exported schema."""
    return {
        f"{name}.schema.json": json.dumps(describe(msgspec.json.schema(contract), contract), indent=2, sort_keys=True)
        + "\n"
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
